"""Mutual TLS between the mesh's services, when certificate paths are configured.

`TLS_CERT_FILE`, `TLS_KEY_FILE` and `TLS_CA_FILE` (all three, or none): the service serves TLS only and
requires every client to present a certificate issued by that CA (a client without one, or with one
from another CA, cannot connect), and its own channels present its certificate and verify the peer's
against the same CA. A caller whose certificate names a mesh workload (URI SAN `spiffe://shop/<name>`)
is a trusted caller (service_runtime.identity); service tokens are then neither sent nor accepted.
The files are read once, at start (service_runtime.settings).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc


@dataclass(frozen=True)
class MutualTls:
    certificate_chain: bytes
    private_key: bytes = field(repr=False)  # never in a log line or a traceback
    root_certificates: bytes

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.root_certificates,
            require_client_auth=True,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )

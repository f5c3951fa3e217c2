"""The command line: `checkoutctl [options] demo | show <checkout_id> | failed | trace <checkout_id>`.

Expected failures (the mesh is down, a call is refused, a checkout is unknown) print one line on
stderr and exit 1; a usage error exits 2 (argparse); Ctrl-C exits 130. Nothing expected prints a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from collections.abc import Sequence

from rich.console import Console

from checkoutctl.failures import CtlError

#: Width of the tables when stdout is not a terminal (a pipe, a log, a test), so ids are never folded.
PIPE_WIDTH = 200
#: --method's choices, the ShippingMethod values without their prefix.
_METHODS = ("express", "standard")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="checkoutctl",
        description="Operate and try the checkout mesh: run a demo checkout, show a saga, list what needs an operator.",
        epilog="Addresses default to `make up`'s: 127.0.0.1:<DEVSTACK_PORT_BASE + i> (gateway 50050, cart 50051, "
        "inventory 50052, order 50054). Tokens are signed with AUTH_JWT_KEYS and SERVICE_TOKEN_SECRET, "
        "the development defaults when unset, as the services read them.",
    )
    _mesh_options(parser)
    # The same options after the command too (`checkoutctl demo --port-base …`); there they have no
    # defaults of their own, so they never undo one given before the command.
    after = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    _mesh_options(after)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "demo",
        parents=[after],
        help="run a whole checkout as a demo customer and print each step",
        description="Create a cart as a demo customer, add items from the demo catalogue, start a checkout, "
        "place the order with a sandbox test card and print each step, the quote, the saga and the order. "
        "Exits 0 when the checkout COMPLETED.",
    )
    run.add_argument("--user", help="the demo customer's user id (default: a fresh demo-<hex> per run)")
    run.add_argument(
        "--card", default="tok_visa", help="sandbox PSP test token (default tok_visa; tok_decline_generic declines)"
    )
    run.add_argument("--method", choices=_METHODS, default="standard", help="shipping method")
    run.add_argument("--email", default="dana.demo@example.com", help="the customer's e-mail for the order")
    run.add_argument("--wait", type=float, default=30.0, help="seconds to wait for a saga still PLACING (default 30)")

    detail = commands.add_parser(
        "show",
        parents=[after],
        help="a checkout's saga steps with attempts, status, timings and last errors",
        description="Print a checkout (any customer's) and its saga step log through the trusted admin service.",
    )
    detail.add_argument("checkout_id", help="the checkout's id")

    stuck = commands.add_parser(
        "failed",
        parents=[after],
        help="checkouts that need an operator",
        description="List FAILED checkouts, and PLACING ones unchanged for --placing-minutes or more.",
    )
    stuck.add_argument(
        "--placing-minutes", type=int, default=5, help="a PLACING checkout this old needs a look (default 5)"
    )
    stuck.add_argument("--limit", type=int, default=200, help="at most this many of each (default 200)")
    waterfall = commands.add_parser(
        "trace",
        parents=[after],
        help="a checkout's trace as a waterfall (from the span file `make up` writes)",
        description="Print the trace of a checkout (gateway, every service, the event relay and the notification) "
        "as a waterfall: service, span, start offset, duration, status and a bar. Reads the JSON-lines span "
        "file the local mesh writes (<DEVSTACK_STATE_DIR or .devstack>/spans.jsonl).",
    )
    waterfall.add_argument("checkout_id", help="the checkout's id")
    waterfall.add_argument("--spans", metavar="FILE", help="the span file (default: the one `make up` writes)")
    waterfall.add_argument(
        "--wait", type=float, default=5.0, help="seconds to wait for the spans to reach the file (default 5)"
    )
    return parser


def _mesh_options(parser: argparse.ArgumentParser) -> None:
    mesh = parser.add_argument_group("where the mesh is")
    mesh.add_argument("--port-base", type=int, help="first service port of the mesh (env DEVSTACK_PORT_BASE; 50050)")
    for name in ("gateway", "cart", "inventory", "order"):
        mesh.add_argument(f"--{name}", metavar="HOST:PORT", help=f"the {name} service (env {name.upper()}_TARGET)")
    mesh.add_argument("--timeout", type=float, default=10.0, help="seconds per call (default 10)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.timeout <= 0:
        parser.error("--timeout must be positive")
    if arguments.command == "failed" and (arguments.placing_minutes < 0 or arguments.limit < 1):
        parser.error("--placing-minutes must be 0 or more and --limit 1 or more")
    console = Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)
    errors = Console(stderr=True, width=None if sys.stderr.isatty() else PIPE_WIDTH)
    try:
        return asyncio.run(_run(arguments, console))
    except CtlError as error:
        errors.print(f"[bold red]checkoutctl:[/bold red] {error}", soft_wrap=True, highlight=False)
        return 1
    except KeyboardInterrupt:
        errors.print("checkoutctl: interrupted")
        return 130


async def _trace(arguments: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from checkoutctl import trace
    from devstack.errors import DevstackError
    from devstack.observe import spans_file
    from devstack.settings import DevstackSettings

    if arguments.spans:
        path = Path(arguments.spans)
    else:
        try:
            path = spans_file(DevstackSettings.from_environ(os.environ).state_dir)
        except DevstackError as error:
            raise CtlError(str(error)) from None
    await trace.show(path, arguments.checkout_id, console, wait_seconds=max(0.0, arguments.wait))
    return 0


async def _run(arguments: argparse.Namespace, console: Console) -> int:
    if arguments.command == "trace":
        return await _trace(arguments, console)
    # Imported here, not at the top, so that `--help` and usage errors answer at once (grpc, the
    # generated protos and devstack's tables take most of a second to import on a busy machine).
    from checkoutctl import admin, demo
    from checkoutctl.mesh import Mesh, identity_config, mesh_tls
    from checkoutctl.targets import TargetError, Targets
    from shop.shipping.v1 import shipping_service_pb2 as shipping_pb

    try:
        targets = Targets.resolve(
            os.environ,
            port_base=arguments.port_base,
            overrides={name: getattr(arguments, name) for name in ("gateway", "cart", "inventory", "order")},
        )
    except TargetError as error:
        raise CtlError(str(error)) from None
    mesh = Mesh(targets, identity_config(), timeout_seconds=arguments.timeout, tls=mesh_tls())
    try:
        if arguments.command == "demo":
            options = demo.DemoOptions(
                payment_token=arguments.card,
                shipping_method=shipping_pb.ShippingMethod.Value(f"SHIPPING_METHOD_{arguments.method.upper()}"),
                email=arguments.email,
                wait_seconds=arguments.wait,
            )
            if arguments.user:
                options = dataclasses.replace(options, user_id=arguments.user)
            await demo.run_demo(mesh, options, console)
        elif arguments.command == "show":
            await admin.show(mesh, arguments.checkout_id, console)
        else:
            await admin.failed(mesh, console, placing_minutes=arguments.placing_minutes, limit=arguments.limit)
    finally:
        await mesh.close()
    return 0

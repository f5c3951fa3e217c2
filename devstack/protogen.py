"""Regenerates `generated/` from `protos/`: Python modules, gRPC stubs, .pyi stubs and a descriptor set.

Run through `make proto`. The output is committed; `make proto-check` fails when it is stale.
The Python code generator's version shapes the output, so grpcio-tools and mypy-protobuf are pinned
in pyproject.toml's `dev` extra.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GENERATED = ROOT / "generated"
DESCRIPTOR_SET = GENERATED / "shop" / "descriptors.binpb"
BUF_DEPS = ROOT / ".buf-deps"

#: Google's protos that ours import and that buf must see as a local module (the well-known types,
#: google/protobuf/*, are built into buf). `generate` refuses a proto that imports one not listed here.
GOOGLE_IMPORTS = (
    "google/api/annotations.proto",
    "google/api/http.proto",
    "google/api/field_behavior.proto",
    "google/type/date.proto",
)

_IMPORT = re.compile(r'^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;', re.MULTILINE)


def googleapis_root() -> Path:
    """Folder holding googleapis-common-protos' .proto files (google/api/..., google/rpc/...)."""
    import google.api.annotations_pb2 as annotations

    return Path(annotations.__file__).resolve().parent.parent.parent


def well_known_root() -> Path:
    return Path(grpc_tools.__file__).resolve().parent / "_proto"


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))


def unlisted_google_imports() -> list[str]:
    """Imports of Google protos (other than the well-known types) missing from GOOGLE_IMPORTS."""
    missing: set[str] = set()
    for path in PROTOS.rglob("*.proto"):
        for name in _IMPORT.findall(path.read_text()):
            if name.startswith("google/") and not name.startswith("google/protobuf/") and name not in GOOGLE_IMPORTS:
                missing.add(f"{path.relative_to(PROTOS)} imports {name}")
    return sorted(missing)


def copy_buf_deps() -> None:
    """Copies the Google protos we import into .buf-deps/ (git-ignored) so `buf lint` works offline."""
    source = googleapis_root()
    for name in GOOGLE_IMPORTS:
        target = BUF_DEPS / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, target)


def generate() -> int:
    files = proto_files()
    missing = unlisted_google_imports()
    if missing:
        for line in missing:
            print(f"protogen: {line}, which is not in GOOGLE_IMPORTS (buf lint would not find it)", file=sys.stderr)
        return 1
    if GENERATED.exists():
        shutil.rmtree(GENERATED)
    GENERATED.mkdir()
    includes = [f"-I{PROTOS}", f"-I{googleapis_root()}", f"-I{well_known_root()}"]
    bindir = Path(sys.executable).parent
    outputs = [
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={GENERATED}",
        f"--grpc_python_out={GENERATED}",
        f"--mypy_out={GENERATED}",
        f"--mypy_grpc_out={GENERATED}",
    ]
    code: int = protoc.main(["grpc_tools.protoc", *includes, *outputs, *files])  # grpc_tools is untyped
    if code != 0:
        return code
    # The descriptor set (for Envoy's transcoder and the contract tests) keeps the comments
    # (--include_source_info); the Python modules above embed descriptors without them.
    DESCRIPTOR_SET.parent.mkdir(parents=True, exist_ok=True)
    code = protoc.main(
        [
            "grpc_tools.protoc",
            *includes,
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={DESCRIPTOR_SET}",
            *files,
        ]
    )
    if code != 0:
        return code
    for folder in [GENERATED / "shop", *(p for p in (GENERATED / "shop").rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    (GENERATED / "shop" / "py.typed").touch()
    copy_buf_deps()
    print(f"generated {len(files)} proto files into {GENERATED.relative_to(ROOT)}/")
    return 0


def main(argv: list[str]) -> int:
    if argv == ["buf-deps"]:
        copy_buf_deps()
        return 0
    return generate()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Generate the Python protobuf and gRPC code under gen/python from proto/.

Run through `make proto`; the output is committed and `make check-proto`
fails when it is stale. Never edit the generated files by hand.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE = Path("mangakai") / "v1"


def generate(out: Path) -> None:
    include = str(resources.files("grpc_tools") / "_proto")
    files = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE).glob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        # Connect/gRPC-Web server stubs (the gateway's web listener) for google.protobuf messages.
        f"--connectrpc_out={out}",
        "--connectrpc_opt=protobuf=google,io=async",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for package in (Path("mangakai"), PACKAGE):
        (out / package / "__init__.py").write_text(
            '"""Generated from proto/ by scripts/gen_proto.py; do not edit."""\n'
        )
        (out / package / "py.typed").write_text("")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when gen/python is stale")
    args = parser.parse_args()
    target = ROOT / "gen" / "python"
    if not args.check:
        shutil.rmtree(target / "mangakai", ignore_errors=True)
        generate(target)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        stale = [
            str(p.relative_to(fresh))
            for p in sorted(fresh.rglob("*"))
            if p.is_file()
            and (
                not (target / p.relative_to(fresh)).is_file()
                or (target / p.relative_to(fresh)).read_bytes() != p.read_bytes()
            )
        ]
        extra = [
            str(p.relative_to(target))
            for p in sorted((target / "mangakai").rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and not (fresh / p.relative_to(target)).exists()
        ]
    if stale or extra:
        print("gen/python is stale; run `make proto`:", *stale, *extra, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

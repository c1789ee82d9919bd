"""Generate the Python code of every ``proto/**/*.proto`` into ``gateway/api/generated/``.

Run by ``make proto``; a unit test runs it into a temporary directory and checks that the
committed files are identical, so the generated code can never drift from the contract.

protoc names the generated modules after the proto paths relative to ``-I proto``
(``activation/v1/activation_pb2.py``), and ``grpc_tools`` writes absolute imports between them
(``from activation.v1 import activation_pb2``) that only resolve when the output directory is on
``sys.path``. Instead of touching ``sys.path``, this script turns the imports between our own
generated modules into relative imports (the approach of protoletariat), so the tree works as the
``gateway.api.generated`` package wherever it lives. The descriptors keep their clean proto file
names (``activation/v1/activation.proto``), which is what server reflection shows.

Usage: ``python proto/generate.py [--out DIR]`` (default: gateway/api/generated).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent
DEFAULT_OUT = REPO_ROOT / "gateway" / "api" / "generated"
PACKAGE_DOC = '"""Generated from proto/ by `make proto` (proto/generate.py). Do not edit by hand."""\n'
_FROM_IMPORT = re.compile(r"^from ((?:\w+\.)*\w+) import (\w+_pb2(?:_grpc)?)\b", re.MULTILINE)


def proto_files(root: Path = PROTO_ROOT) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.proto"))


def _relative(importer: tuple[str, ...], target: tuple[str, ...]) -> str:
    common = 0
    while common < min(len(importer), len(target)) and importer[common] == target[common]:
        common += 1
    dots = "." * (1 + len(importer) - common)
    return dots + ".".join(target[common:])


def rewrite_imports(text: str, *, module_package: tuple[str, ...], local_roots: frozenset[str]) -> str:
    """Make imports of our own generated modules relative; leave google.protobuf & co alone."""

    def repl(m: re.Match[str]) -> str:
        target = tuple(m.group(1).split("."))
        if target[0] not in local_roots:
            return m.group(0)
        return f"from {_relative(module_package, target)} import {m.group(2)}"

    return _FROM_IMPORT.sub(repl, text)


def generate(out: Path, *, root: Path = PROTO_ROOT) -> list[Path]:
    """Generate into ``out`` (replaced entirely). Returns the files written, relative to ``out``."""
    import grpc_tools
    from grpc_tools import protoc

    files = proto_files(root)
    if not files:
        raise SystemExit(f"no .proto files under {root}")
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    local_roots = frozenset(Path(f).parts[0] for f in files)
    with tempfile.TemporaryDirectory(prefix="agw-proto-") as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *files,
        ]
        rc = protoc.main(args)
        if rc != 0:
            raise SystemExit(f"protoc failed with exit status {rc}")
        tmp_root = Path(tmp)
        written: list[Path] = []
        for path in sorted(tmp_root.rglob("*")):
            if not path.is_file() or path.suffix not in (".py", ".pyi"):
                continue
            rel = path.relative_to(tmp_root)
            text = rewrite_imports(path.read_text(), module_package=rel.parent.parts, local_roots=local_roots)
            path.write_text(text)
            written.append(rel)
        # every directory becomes a package
        packages = {Path()} | {p for rel in written for p in rel.parents}
        for pkg in sorted(packages):
            init = tmp_root / pkg / "__init__.py"
            init.write_text(PACKAGE_DOC if pkg == Path() else "")
            written.append(pkg / "__init__.py")
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(tmp_root, out)
    return sorted(set(written))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ns = parser.parse_args(argv)
    for rel in generate(ns.out):
        print(ns.out / rel)  # a build script: printing the files written is its output
    return 0


if __name__ == "__main__":
    sys.exit(main())

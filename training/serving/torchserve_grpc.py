"""gRPC stubs for TorchServe, generated on demand from the .proto files inside its jar.

The protos ship in ``ts/frontend/model-server.jar`` (inference.proto, management.proto and the
google/rpc/status.proto they import); grpcio-tools compiles them into ``<root>/.run/grpc/``
(git-ignored), so the stubs always match the installed TorchServe and are never committed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

from training.serving.processes import run_dir

PROTOS = ("inference.proto", "management.proto", "google/rpc/status.proto")
MODULES = ("inference_pb2", "inference_pb2_grpc", "management_pb2", "management_pb2_grpc")
STAMP = "jar.sha256"


def torchserve_jar() -> Path:
    import ts

    return Path(ts.__file__).resolve().parent / "frontend" / "model-server.jar"


def generate_stubs(out: Path | None = None) -> Path:
    """Compile the jar's protos into ``out`` (default ``.run/grpc``) unless already current."""
    from grpc_tools import protoc

    out = out or run_dir() / "grpc"
    jar = torchserve_jar()
    digest = hashlib.sha256(jar.read_bytes()).hexdigest()
    if (out / STAMP).is_file() and (out / STAMP).read_text() == digest:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".grpc-") as tmp:
        protos, build = Path(tmp) / "protos", Path(tmp) / "build"
        build.mkdir()
        with zipfile.ZipFile(jar) as archive:
            for name in PROTOS:
                archive.extract(name, protos)
        well_known = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
        code = protoc.main(
            ["grpc_tools.protoc", f"-I{protos}", f"-I{well_known}",
             f"--python_out={build}", f"--grpc_python_out={build}",
             *(str(protos / name) for name in PROTOS)]
        )  # fmt: skip
        if code != 0:
            raise RuntimeError(f"protoc failed ({code}) on the protos of {jar}")
        (build / STAMP).write_text(digest)
        shutil.rmtree(out, ignore_errors=True)
        build.rename(out)  # whole folder at once: a concurrent reader never sees half of it
    return out


# Once per process: checking the stubs hashes the 46 MB TorchServe jar, and a module is only
# imported once anyway.
@functools.cache
def load_stubs(out: Path | None = None) -> SimpleNamespace:
    """Generate (if needed) and import the stubs: ``.inference_pb2``, ``.inference_pb2_grpc``..."""
    folder = str(generate_stubs(out))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    importlib.invalidate_caches()
    return SimpleNamespace(**{name: importlib.import_module(name) for name in MODULES})

"""Plan files and timing caches run no code; the server binds to loopback by default."""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = ["dist_rt/planfile.py", "dist_rt/engine.py"]
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "marshal", "shelve", "cloudpickle"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}


def _timing_cache_files() -> list[str]:
    out = []
    for folder, _, names in os.walk(os.path.join(ROOT, "dist_rt", "builder")):
        out += [os.path.join(folder, n) for n in names
                if n.endswith(".py") and "cache" in open(os.path.join(folder, n)).read()]
    return [os.path.relpath(p, ROOT) for p in out]


@pytest.mark.parametrize("path", FILES + _timing_cache_files())
def test_no_code_execution_when_loading(path):
    tree = ast.parse(open(os.path.join(ROOT, path)).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not {a.name.split(".")[0] for a in node.names} & FORBIDDEN_MODULES, path
        if isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] not in FORBIDDEN_MODULES, path
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{path}:{node.lineno}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in {"load", "loads"} or not (
                isinstance(node.func.value, ast.Name)
                and node.func.value.id in {"np", "numpy"} and any(
                    k.arg == "allow_pickle" for k in node.keywords)), f"{path}:{node.lineno}"


def test_header_size_is_bounded_before_reading():
    from dist_rt import planfile  # noqa: PLC0415

    assert planfile.MAX_HEADER_BYTES <= 1 << 30


def test_serve_default_host_is_loopback():
    path = os.path.join(ROOT, "dist_rt", "serve", "server.py")
    if not os.path.exists(path):
        pytest.skip("dist_rt/serve/server.py is not there yet")
    server = pytest.importorskip("dist_rt.serve.server")
    parse = getattr(server, "parse_args", None)
    if parse is not None:
        try:
            args = parse(["model.onnx"])
        except SystemExit:
            args = None
        if args is not None and hasattr(args, "host"):
            assert args.host == "127.0.0.1"
            return
    assert 'add_argument("--host", default="127.0.0.1"' in open(path).read()

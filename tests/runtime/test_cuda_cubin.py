"""NVRTC programs for sm_90a with an on-disk cubin cache (dist_rt/runtime/cuda/cubin.py).

The cache logic runs everywhere against stand-ins for CuPy and NVRTC (a "compiler" that
returns the source's bytes and counts its calls); the GPU tests compile and run a real
kernel and check a second process reads the file instead of compiling.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[2] / "dist_rt" / "runtime" / "cuda" / "cubin.py"


class _NvrtcError(Exception):
    pass


def _stub_nvrtc(calls: list[str], fail: bool = False) -> types.ModuleType:
    nvrtc = types.ModuleType("nvrtc")
    programs: dict[int, tuple[str, str]] = {}

    def create(src, name, headers, names):
        programs[len(programs) + 1] = (src, name)
        return len(programs)

    def compile_(prog, options):
        calls.append(programs[prog][1])
        if fail:
            raise _NvrtcError("NVRTC_ERROR_COMPILATION (6)")
        assert "--gpu-architecture=sm_90a" in options

    nvrtc.NVRTCError = _NvrtcError
    nvrtc.createProgram = create
    nvrtc.compileProgram = compile_
    nvrtc.getCUBIN = lambda prog: b"CUBIN:" + programs[prog][0].encode()
    nvrtc.getProgramLog = lambda prog: "kern.cu(1): error: expected a declaration"
    nvrtc.destroyProgram = lambda prog: None
    nvrtc.getVersion = lambda: (12, 8)
    return nvrtc


class _RawModule:
    """Stands in for cupy.RawModule(path=...): reads the file when ``module`` is touched."""

    def __init__(self, path):
        self.path = path
        self.data = None

    @property
    def module(self):
        self.data = Path(self.path).read_bytes()
        return self


@pytest.fixture
def load_cubin(monkeypatch, tmp_path):
    """A fresh copy of cubin.py over stub CuPy/NVRTC modules; returns (module, calls)."""

    def make(fail: bool = False):
        calls: list[str] = []
        cupy = types.ModuleType("cupy")
        cupy.RawModule = lambda path: _RawModule(path)
        libs = types.ModuleType("cupy_backends.cuda.libs")
        libs.nvrtc = _stub_nvrtc(calls, fail)
        for name, mod in [("cupy", cupy), ("cupy_backends", types.ModuleType("cb")),
                          ("cupy_backends.cuda", types.ModuleType("cbc")),
                          ("cupy_backends.cuda.libs", libs),
                          ("cupy_backends.cuda.libs.nvrtc", libs.nvrtc)]:
            monkeypatch.setitem(sys.modules, name, mod)
        spec = importlib.util.spec_from_file_location("cubin_under_test", MODULE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module, calls

    monkeypatch.setenv("DIST_RT_KERNEL_CACHE", str(tmp_path / "cache"))
    return make


class TestCache:
    def test_compiles_once_per_machine(self, load_cubin, tmp_path):
        cubin, calls = load_cubin()
        mod = cubin.load("src A", "a.cu", "sm_90a")
        assert mod.data == b"CUBIN:src A" and calls == ["a.cu"]
        assert cubin.load("src A", "a.cu", "sm_90a") is mod  # same process: in memory
        (path,) = (tmp_path / "cache").glob("*.cubin")
        fresh, calls2 = load_cubin()  # another process: reads the file
        assert fresh.load("src A", "a.cu", "sm_90a").data == b"CUBIN:src A"
        assert calls2 == []
        assert path.read_bytes()[32:] == b"CUBIN:src A"

    def test_source_arch_and_options_each_get_a_file(self, load_cubin, tmp_path):
        cubin, calls = load_cubin()
        cubin.load("src A", "a.cu", "sm_90a")
        cubin.load("src B", "a.cu", "sm_90a")
        cubin.load("src A", "a.cu", "sm_90a", ("-DX=1",))
        assert len(calls) == 3 and len(list((tmp_path / "cache").glob("*.cubin"))) == 3

    @pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
    def test_a_damaged_file_is_compiled_again(self, load_cubin, tmp_path, damage):
        cubin, _ = load_cubin()
        cubin.load("src A", "a.cu", "sm_90a")
        (path,) = (tmp_path / "cache").glob("*.cubin")
        good = path.read_bytes()
        bad = {"truncate": good[:-3], "flip": good[:-1] + b"?", "empty": b""}[damage]
        path.write_bytes(bad)
        fresh, calls = load_cubin()
        assert fresh.load("src A", "a.cu", "sm_90a").data == b"CUBIN:src A"
        assert calls == ["a.cu"] and path.read_bytes() == good

    def test_an_unwritable_cache_still_loads(self, load_cubin, tmp_path, monkeypatch):
        blocker = tmp_path / "file"
        blocker.write_text("not a folder")
        monkeypatch.setenv("DIST_RT_KERNEL_CACHE", str(blocker / "cache"))
        cubin, calls = load_cubin()
        assert cubin.load("src A", "a.cu", "sm_90a").data == b"CUBIN:src A"
        assert calls == ["a.cu"]

    def test_compile_errors_carry_the_log(self, load_cubin, tmp_path):
        cubin, _ = load_cubin(fail=True)
        with pytest.raises(cubin.CompileError,
                           match=r"(?s)a.cu for sm_90a.*expected a declaration"):
            cubin.load("src A", "a.cu", "sm_90a")
        assert not list((tmp_path / "cache").glob("*.cubin"))

    def test_cache_folder(self, load_cubin, monkeypatch, tmp_path):
        cubin, _ = load_cubin()
        assert cubin.cache_dir() == tmp_path / "cache"
        monkeypatch.delenv("DIST_RT_KERNEL_CACHE")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert cubin.cache_dir() == tmp_path / "xdg" / "dist_rt" / "kernels"


@pytest.fixture(scope="module")
def cp():
    cupy = pytest.importorskip("cupy")
    if int(cupy.cuda.Device().compute_capability) != 90:
        pytest.skip("sm_90a code runs on sm_90 (H100, H200) only")
    return cupy


@pytest.mark.gpu
class TestOnTheGpu:
    SOURCE = 'extern "C" __global__ void add1(float* x) { x[threadIdx.x] += 1.f; }\n'

    def test_compiles_once_then_reads_the_file(self, cp, tmp_path, monkeypatch):
        from dist_rt.runtime.cuda import cubin

        monkeypatch.setenv(cubin.CACHE_ENV, str(tmp_path))
        mod = cubin.load(self.SOURCE, "add1.cu", "sm_90a")
        x = cp.zeros(32, cp.float32)
        mod.get_function("add1")((1,), (32,), (x,))
        assert float(x.sum()) == 32
        files = list(tmp_path.glob("*.cubin"))
        assert len(files) == 1
        # Another process finds the file and does not compile (NVRTC is made to fail there).
        code = ("import sys; from cupy_backends.cuda.libs import nvrtc\n"
                "def no(*a, **k): raise AssertionError('compiled again')\n"
                "nvrtc.compileProgram = no\n"
                "from dist_rt.runtime.cuda import cubin\n"
                f"cubin.load({self.SOURCE!r}, 'add1.cu', 'sm_90a').get_function('add1')\n")
        subprocess.run([sys.executable, "-c", code], check=True, env=_env(tmp_path))

    def test_a_corrupt_file_is_compiled_again(self, cp, tmp_path, monkeypatch):
        from dist_rt.runtime.cuda import cubin

        monkeypatch.setenv(cubin.CACHE_ENV, str(tmp_path))
        cubin.load(self.SOURCE + "// v2\n", "add1.cu", "sm_90a")
        (path,) = tmp_path.glob("*.cubin")
        data = path.read_bytes()
        path.write_bytes(data[:-10])  # truncated: the stored digest no longer matches
        code = ("from dist_rt.runtime.cuda import cubin\n"
                f"cubin.load({self.SOURCE + '// v2' + chr(10)!r}, 'add1.cu', 'sm_90a')"
                ".get_function('add1')\n")
        subprocess.run([sys.executable, "-c", code], check=True, env=_env(tmp_path))
        assert path.read_bytes() == data

    def test_compile_errors_carry_the_log(self, cp, tmp_path, monkeypatch):
        from dist_rt.runtime.cuda import cubin

        monkeypatch.setenv(cubin.CACHE_ENV, str(tmp_path))
        with pytest.raises(cubin.CompileError, match="broken.cu.*sm_90a"):
            cubin.load("this is not CUDA", "broken.cu", "sm_90a")
        assert not list(tmp_path.glob("*.cubin"))


def _env(cache) -> dict[str, str]:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return {**os.environ, "DIST_RT_KERNEL_CACHE": str(cache),
            "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}

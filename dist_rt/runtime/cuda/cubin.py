"""NVRTC programs compiled for an explicit target (``sm_90a``), cached on disk as cubins.

CuPy's ``RawModule`` compiles for the device's plain ``sm_XX`` (its architecture is an
integer), but Hopper's warpgroup MMA (``wgmma``) and ``setmaxnreg`` exist only in the
architecture-specific target ``sm_90a``. :func:`load` calls NVRTC itself with
``--gpu-architecture=<arch>``, keeps the cubin under :func:`cache_dir` and loads it with
``cupy.RawModule(path=...)``, so the kernels are compiled once per machine, not once per
process.

A cache file is named by the SHA-256 of the source, the target, the options and the NVRTC
version, and holds the cubin's own SHA-256 before the cubin: a truncated or corrupt file
(two processes racing, a full disk) fails that check and is compiled again. The file is
written to a temporary name and renamed, so readers never see half of one. A cubin is GPU
code only; loading one runs nothing on the host.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import cupy
from cupy_backends.cuda.libs import nvrtc

#: Environment variable naming the cache folder (default ``~/.cache/dist_rt/kernels``).
CACHE_ENV = "DIST_RT_KERNEL_CACHE"
_DIGEST = 32  # bytes of a SHA-256 digest

#: (source key) -> loaded module, so a process reads each cache file once.
_MODULES: dict[str, Any] = {}


class CompileError(RuntimeError):
    """NVRTC rejected a program; the message carries NVRTC's log."""


def cache_dir() -> Path:
    """The folder of cached cubins: ``$DIST_RT_KERNEL_CACHE`` or ``~/.cache/dist_rt/kernels``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dist_rt" / "kernels"


def _compile(source: str, name: str, arch: str, options: tuple[str, ...]) -> bytes:
    prog = nvrtc.createProgram(source, name, (), ())
    try:
        try:
            nvrtc.compileProgram(prog, [f"--gpu-architecture={arch}", *options])
        except nvrtc.NVRTCError as exc:
            raise CompileError(f"NVRTC could not compile {name} for {arch}: {exc}\n"
                               f"{nvrtc.getProgramLog(prog)}") from None
        return nvrtc.getCUBIN(prog)
    finally:
        nvrtc.destroyProgram(prog)


def _read(path: Path) -> bytes | None:
    """The cubin in ``path`` if the file exists and its checksum matches, else None."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    cubin = data[_DIGEST:]
    return cubin if len(data) > _DIGEST and hashlib.sha256(cubin).digest() == data[:_DIGEST] \
        else None


def _write(path: Path, cubin: bytes) -> None:
    """Atomically store ``cubin`` (after its digest); a failure only loses the cache entry."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
            tmp.write(hashlib.sha256(cubin).digest() + cubin)
        os.replace(tmp.name, path)
    except OSError:
        pass  # read-only or full cache folder: compile again next process


def load(source: str, name: str, arch: str, options: tuple[str, ...] = ()) -> Any:
    """``cupy.RawModule`` of ``source`` compiled by NVRTC for ``arch`` (e.g. ``"sm_90a"``).

    Args:
        source: CUDA C++ with ``extern "C"`` entry points (no name expressions).
        name: Program name, used in NVRTC's messages.
        arch: The ``--gpu-architecture`` value.
        options: Further NVRTC options.

    Returns:
        The loaded module (``get_function`` gives ``cupy.RawKernel`` objects).

    Raises:
        CompileError: NVRTC rejected the program (its log is in the message).
    """
    version = ".".join(map(str, nvrtc.getVersion()))
    key = hashlib.sha256("\0".join((source, arch, *options, version)).encode()).hexdigest()
    module = _MODULES.get(key)
    if module is not None:
        return module
    path = cache_dir() / f"{key}.cubin"
    cubin = _read(path)
    if cubin is None:
        cubin = _compile(source, name, arch, tuple(options))
        _write(path, cubin)
    # RawModule loads from a file; a private copy keeps a concurrent rewrite out of the way.
    with tempfile.TemporaryDirectory() as tmp:
        own = Path(tmp) / f"{key}.cubin"
        own.write_bytes(cubin)
        module = cupy.RawModule(path=str(own))
        _ = module.module  # loads the file now, while it exists
    _MODULES[key] = module
    return module

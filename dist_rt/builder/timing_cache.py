"""The tactic timing cache: measured tactic times per layer signature, in one JSON file.

File format (``format_version`` 1)::

    {"format": "dist_rt.timing_cache", "format_version": 1,
     "dist_rt_version": "0.1.0", "device": "cpu", "arch": "x86_64",
     "checksum": "<sha-256 of the canonical JSON of entries>",
     "entries": {"<signature>": {"tactic": "flat2d", "times_ms": {"default": 1.9, ...}}}}

A signature (see :func:`dist_rt.builder.passes.tactics.signature`) names the op, its
attributes, its input shapes and dtypes, the backend, the device arch and the dist_rt version,
so one entry is valid exactly where it was measured.

**A cache that cannot be used is ignored, never fatal**: a damaged file (not JSON, a wrong
checksum, a malformed entry) or one written for another dist_rt version, format version,
device or arch produces one :class:`TimingCacheWarning` line naming the file and the reason,
and the build times its tactics as if there were no cache; saving then replaces the file with
this build's entries. A cache is only a shortcut, so failing the build over it would trade a
slower build for no build. Failing to *write* the cache is a :class:`BuildError`: the user
asked for the file and would otherwise lose every timing silently.

Writes are atomic (a temporary file in the same folder, then ``os.replace``), and a save first
merges the entries another process (another rank) wrote meanwhile, so ranks sharing one file
under ``mpiexec`` never see a half-written cache and rarely lose each other's entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from typing import Any

import dist_rt
from dist_rt.errors import BuildError

FORMAT = "dist_rt.timing_cache"
FORMAT_VERSION = 1


class TimingCacheWarning(UserWarning):
    """A timing cache file was ignored (damaged, or written for another version/device)."""


def _checksum(entries: dict[str, Any]) -> str:
    text = json.dumps(entries, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _valid_entry(entry: Any) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("tactic"), str)
            and isinstance(entry.get("times_ms"), dict)
            and all(isinstance(k, str) and isinstance(v, (int, float))
                    for k, v in entry["times_ms"].items()))


class TimingCache:
    """Tactic choices by layer signature, for one device, optionally backed by a file.

    Args:
        path: The JSON file (read now if it exists), or None for an in-memory cache.
        device: ``"cpu"`` or ``"cuda"``.
        arch: The device architecture (``x86_64``, ``sm_90``...).

    Attributes:
        entries: Signature -> ``{"tactic": name, "times_ms": {tactic: milliseconds}}``.
        ignored: Why the file's content was ignored ("" when it was used or absent).
    """

    def __init__(self, path: str | os.PathLike | None, device: str, arch: str):
        self.path = None if path is None else os.fspath(path)
        self.device = device
        self.arch = arch
        self.entries: dict[str, dict[str, Any]] = {}
        self.ignored = ""
        self._dirty = False
        if self.path is not None:
            self.entries, self.ignored = self._read()
            if self.ignored:
                warnings.warn(f"timing cache {self.path!r} ignored: {self.ignored}",
                              TimingCacheWarning, stacklevel=2)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, signature: str) -> dict[str, Any] | None:
        """The entry of ``signature``, or None."""
        return self.entries.get(signature)

    def put(self, signature: str, tactic: str, times_ms: dict[str, float]) -> None:
        """Record the measured times of one signature and the chosen tactic."""
        self.entries[signature] = {"tactic": tactic,
                                   "times_ms": {k: round(float(v), 6)
                                                for k, v in times_ms.items()}}
        self._dirty = True

    def _read(self) -> tuple[dict[str, dict[str, Any]], str]:
        """``(entries, why ignored)``: the file's entries, or ``({}, reason)``."""
        try:
            with open(self.path, encoding="utf-8") as f:
                obj = json.load(f)
        except FileNotFoundError:
            return {}, ""
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            return {}, f"cannot be read as JSON ({exc})"
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            return {}, f"not a dist_rt timing cache (format {_get(obj, 'format')!r})"
        found = {"format_version": obj.get("format_version"),
                 "dist_rt_version": obj.get("dist_rt_version"),
                 "device": obj.get("device"), "arch": obj.get("arch")}
        want = {"format_version": FORMAT_VERSION, "dist_rt_version": dist_rt.__version__,
                "device": self.device, "arch": self.arch}
        for key, value in want.items():
            if found[key] != value:
                return {}, f"written for {key} {found[key]!r}, this build uses {value!r}"
        entries = obj.get("entries")
        if not isinstance(entries, dict) or not all(_valid_entry(e) for e in entries.values()):
            return {}, "malformed entries"
        if obj.get("checksum") != _checksum(entries):
            return {}, "checksum mismatch (the file was damaged or edited)"
        return entries, ""

    def save(self) -> bool:
        """Write the cache atomically if it changed, merging entries written meanwhile.

        Returns:
            True when the file was written.

        Raises:
            BuildError: The file or its folder cannot be written.
        """
        if self.path is None or not self._dirty:
            return False
        on_disk, why = self._read()
        merged = {**(on_disk if not why else {}), **self.entries}
        header = {"format": FORMAT, "format_version": FORMAT_VERSION,
                  "dist_rt_version": dist_rt.__version__, "device": self.device,
                  "arch": self.arch, "checksum": _checksum(merged), "entries": merged}
        folder = os.path.dirname(os.path.abspath(self.path))
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".timing-cache-", suffix=".tmp", dir=folder)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(header, f, indent=1, sort_keys=True)
                f.write("\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
            raise BuildError(f"cannot write timing cache {self.path!r}: {exc}") from None
        self.entries = merged
        self._dirty = False
        return True


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else type(obj).__name__

"""fuse_util.concat_columns: the threaded column concatenation of the projection merges."""

from __future__ import annotations

import numpy as np
import pytest

from dist_rt import dtypes
from dist_rt.builder.passes import fuse_util
from dist_rt.builder.passes.fuse_util import concat_columns


@pytest.fixture
def always_threaded(monkeypatch):
    """Threads from the first byte, so small arrays take the parallel path."""
    monkeypatch.setattr(fuse_util, "_PARALLEL_CONCAT_BYTES", 0)


def _parts(rows: int, cols: list[int], dtype=np.float16, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((rows, n)).astype(dtype) for n in cols]


class TestConcatColumns:
    @pytest.mark.parametrize("workers", [1, 2, 4, 7])
    @pytest.mark.parametrize("rows", [1, 3, 4 * 3 + 1, 64])
    def test_byte_equal_to_numpy(self, always_threaded, workers, rows):
        parts = _parts(rows, [8, 2, 2, 5])
        out = concat_columns(parts, workers=workers)
        want = np.concatenate(parts, axis=1)
        assert out.dtype == want.dtype and out.shape == want.shape
        assert out.flags.c_contiguous
        assert out.tobytes() == want.tobytes()

    @pytest.mark.parametrize("dtype", [np.float32, np.int8, np.uint8, dtypes.bfloat16])
    def test_dtypes(self, always_threaded, dtype):
        parts = _parts(9, [3, 4], dtype)
        assert concat_columns(parts, workers=3).tobytes() == \
            np.concatenate(parts, axis=1).tobytes()

    def test_memory_mapped_and_strided_parts(self, always_threaded, tmp_path):
        parts = _parts(10, [6, 4])
        path = tmp_path / "w.bin"
        path.write_bytes(parts[0].tobytes())
        mapped = np.memmap(path, np.float16, mode="r", shape=parts[0].shape)
        strided = np.asfortranarray(parts[1])
        out = concat_columns([mapped, strided], workers=4)
        assert out.tobytes() == np.concatenate(parts, axis=1).tobytes()

    def test_default_path_large(self):
        parts = [(np.arange(2048 * n) % 251).astype(np.float16).reshape(2048, n) + i
                 for i, n in enumerate([4096, 1024, 1024])]  # 24 MiB: above the threshold
        assert sum(p.nbytes for p in parts) >= fuse_util._PARALLEL_CONCAT_BYTES
        assert np.array_equal(concat_columns(parts), np.concatenate(parts, axis=1))

    def test_mixed_dtypes_promote_like_numpy(self, always_threaded):
        parts = [np.ones((3, 2), np.float16), np.ones((3, 1), np.float32)]
        out = concat_columns(parts, workers=2)
        assert out.dtype == np.float32
        assert out.tobytes() == np.concatenate(parts, axis=1).tobytes()

    def test_mismatched_rows_raise_like_numpy(self, always_threaded):
        with pytest.raises(ValueError):
            concat_columns([np.ones((3, 2)), np.ones((4, 2))], workers=2)

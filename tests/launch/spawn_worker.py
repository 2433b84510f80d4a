"""Worker for test_spawn: host control messages over the TCP store, or a failing rank."""

from __future__ import annotations

import sys
import time

import numpy as np

from launch import discover
from launch.store import StoreChannel


def main() -> int:
    info = discover()
    mode = sys.argv[1]
    if mode == "fail":
        if info.rank == 1:
            return 3
        time.sleep(60)
        return 0
    ch = StoreChannel(info)
    got = ch.all_gather_object({"rank": info.rank, "local": info.local_rank})
    want = [{"rank": r, "local": r} for r in range(info.world_size)]
    arr = np.arange(6, dtype=np.float16).reshape(2, 3) * (info.rank + 1)
    b = ch.broadcast_object(arr if info.rank == info.world_size - 1 else None,
                            root=info.world_size - 1)
    uid = ch.broadcast_object(tuple(range(-3, 3)) if info.rank == 0 else None)
    again = ch.all_gather_object(info.rank)
    b_want = np.arange(6).reshape(2, 3) * info.world_size
    ok = (got == want and b.dtype == np.float16 and np.array_equal(b, b_want)
          and uid == tuple(range(-3, 3)) and again == list(range(info.world_size))
          and info.source == "torchrun")
    print(f"STORE rank {info.rank}/{info.world_size} ok={ok}", flush=True)
    time.sleep(0.2 if info.rank == 0 else 0)  # let the others read before rank 0 stops serving
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Device-clock timing of back-to-back calls, for the tactic pass.

Why not host time: a tactic call is Python dispatch (tens of microseconds) around a kernel
that may take a few, so host wall time over back-to-back calls measures the dispatch path,
not the kernel. On the 1B Llama at 1x128 that picked cuBLASLt algorithms whose Python path
was shorter than the default's but whose kernels were 3-10% slower, and the level-3 engine
ran slower than level 2. The engine itself replays CUDA graphs, where only kernel time and
the gaps between kernels count; so the calls are captured into one graph and its replays
are timed with CUDA events, on a private stream and memory pool.
"""

from __future__ import annotations

from collections.abc import Callable

import cupy

#: Relaxed capture: a call may still grow the private pool with cudaMalloc while captured.
_RELAXED = getattr(cupy.cuda.runtime, "streamCaptureModeRelaxed", 2)


def time_calls(call: Callable[[], object], calls: int, repeats: int) -> list[float] | None:
    """Milliseconds per call of ``calls`` back-to-back ``call()``s, ``repeats`` samples.

    The calls are captured once into a CUDA graph (after one uncaptured warm-up call on the
    same stream), the graph is replayed once to warm up, then each sample is one replay
    between two CUDA events.

    Args:
        call: Enqueues one call on CuPy's current stream; must not synchronize.
        calls: Calls in the graph (at least 1).
        repeats: Samples (at least 1).

    Returns:
        The samples, or None when the calls cannot be captured (a call synchronized, or
        raised while captured): the caller times them another way.
    """
    stream = cupy.cuda.Stream(non_blocking=True)
    pool = cupy.cuda.MemoryPool()
    graph = None
    try:
        with cupy.cuda.using_allocator(pool.malloc), stream:
            call()
            stream.synchronize()
            stream.begin_capture(_RELAXED)
            try:
                for _ in range(max(1, calls)):
                    call()
            except Exception:  # noqa: BLE001 - any failure: end the capture, time another way
                _end(stream)
                return None
            graph = _end(stream)
            if graph is None:
                return None
            graph.launch(stream)
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            samples = []
            for _ in range(max(1, repeats)):
                start.record(stream)
                graph.launch(stream)
                end.record(stream)
                end.synchronize()
                samples.append(cupy.cuda.get_elapsed_time(start, end) / max(1, calls))
            return samples
    finally:
        del graph
        stream.synchronize()
        pool.free_all_blocks()


def _end(stream: cupy.cuda.Stream):
    """End the capture on ``stream``: the graph, or None when the capture was invalidated."""
    try:
        return stream.end_capture()
    except (RuntimeError, cupy.cuda.runtime.CUDARuntimeError):
        return None

"""GPU worker (one process per GPU, ``python -m launch -n N``): the NVLink one-shot all-reduce.

Modes (argv[1]):

* ``check``: sizes x dtypes against a float64 NumPy sum, bit-identical results on every
  rank, 1000 back-to-back calls of changing sizes (epoch parity), a CUDA graph replayed 50
  times on new inputs, messages that must go to NCCL (too big, ``max``, a reordered group,
  float64), the all-reduce fused with AddRMSNorm against the unfused pair. With
  ``DIST_RT_NVLINK_ALLREDUCE=0`` it checks that NCCL runs everything instead.
  Prints ``PATH ...`` and ``SUMMARY rank r/n cases=.. failures=..``.
* ``bench``: median microseconds per all_reduce over 1000 graph-replayed calls (100 replays
  of a 10-call graph, CUDA events) at 8 B, 8 KiB, 32 KiB, 256 KiB; prints ``LAT`` lines
  (rank 0). Run it twice, with and without ``DIST_RT_NVLINK_ALLREDUCE=0``, to compare.
* ``stall_graph``: rank 1 stops calling while rank 0 replays a captured all_reduce; the
  kernel must trap after ``DIST_RT_COLLECTIVE_TIMEOUT`` + 10 s (graph replays are not
  watched), so the job fails instead of hanging.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

import cupy as cp
import ml_dtypes
import numpy as np
from mpi_worker import make

from collectives import create_communicator
from collectives.nvlink import DEFAULT_MAX_BYTES

# (atol, rtol) against the float64 sum: float32 accumulation, then one rounding to the dtype.
TOL = {"float32": (1e-5, 1e-5), "float16": (1e-5, 1e-3), "bfloat16": (1e-5, 8e-3)}


def dtypes() -> list:
    out = [np.dtype(np.float32), np.dtype(np.float16)]
    try:  # CuPy may not know ml_dtypes' bfloat16; test it wherever it does
        cp.asarray(np.zeros(2, ml_dtypes.bfloat16)) + 0
        out.append(np.dtype(ml_dtypes.bfloat16))
    except Exception:  # noqa: BLE001 - any failure means "no bf16 arrays in this CuPy"
        print("NOTE bfloat16 cupy arrays unsupported here; bf16 not tested", flush=True)
    return out


def small_ints(seed: int, case: int, rank: int, count: int, dtype) -> np.ndarray:
    """Integers in [-3, 3]: sums of a few of them plus a small offset are exact in any dtype."""
    rng = np.random.default_rng([seed, case, rank])
    return rng.integers(-3, 4, count).astype(dtype)


class Checker:
    """Runs cases, records failures, and the digest of every nvlink result (rank agreement)."""

    def __init__(self, comm):
        self.comm, self.n, self.rank = comm, comm.size, comm.rank
        self.nv = comm.nvlink
        self.expect = os.environ.get("DIST_RT_NVLINK_ALLREDUCE", "1") != "0"
        self.max_bytes = self.nv.max_bytes if self.nv is not None else DEFAULT_MAX_BYTES
        self.seed = comm.broadcast_object(int(np.random.SeedSequence().entropy % 2**31))
        self.cases, self.fails, self.digests = 0, [], []

    def calls(self) -> int:
        return self.nv.calls if self.nv is not None else 0

    def compare(self, label: str, got, xs: list[np.ndarray], nvlink: bool = True) -> None:
        """``got`` against the float64 sum of ``xs``; nvlink results also join the digests."""
        self.cases += 1
        got_h = cp.asnumpy(got)
        want = np.sum(np.stack([x.astype(np.float64) for x in xs]), axis=0)
        if got_h.shape != want.shape or got_h.dtype != xs[0].dtype:
            self.fails.append(f"{label}: shape/dtype {got_h.shape}/{got_h.dtype}, expected "
                              f"{want.shape}/{xs[0].dtype}")
            return
        atol, rtol = TOL[got_h.dtype.name]
        err = np.abs(got_h.astype(np.float64) - want)
        bad = err > atol + rtol * np.abs(want)
        if bad.any():
            i = int(np.argmax(bad.reshape(-1)))
            self.fails.append(f"{label}: {int(bad.sum())} wrong, first at {i}: got "
                              f"{got_h.reshape(-1)[i]}, expected {want.reshape(-1)[i]}")
        if nvlink and self.expect:
            self.digests.append(hashlib.sha1(got_h.tobytes()).hexdigest())

    def routed(self, label: str, before: int, nvlink: bool) -> None:
        """The call since ``before`` went where it should (nvlink only when expected)."""
        want = before + (1 if nvlink and self.expect else 0)
        if self.calls() != want:
            self.fails.append(f"{label}: nvlink calls {self.calls()}, expected {want}")

    # -- cases ---------------------------------------------------------------------------------

    def sizes(self) -> None:
        for d, dt in enumerate(dtypes()):
            counts = [1, 7, 1000, 4097, 65536 + 3, self.max_bytes // dt.itemsize]
            for k, count in enumerate(counts):
                case = 100 * d + k  # the same on every rank: each rebuilds every input
                xs = [make(self.seed, case, r, (count,), dt) for r in range(self.n)]
                shapes = [(count,)] + ([(8, 125)] if count == 1000 else [])
                for shape in shapes:
                    before = self.calls()
                    got = self.comm.all_reduce(cp.asarray(xs[self.rank]).reshape(shape))
                    label = f"{dt.name} count={count} shape={shape}"
                    self.compare(label, got, [x.reshape(shape) for x in xs])
                    self.routed(label, before, nvlink=True)
            # Unaligned (pointer % 16 == itemsize) and strided inputs.
            xs = [make(self.seed, 100 * d + 77, r, (2 * 4097 + 1,), dt) for r in range(self.n)]
            whole = cp.asarray(xs[self.rank])
            for label, view, ref in [("offset view", whole[1:4098], lambda x: x[1:4098]),
                                     ("strided view", whole[::2], lambda x: x[::2])]:
                before = self.calls()
                self.compare(f"{dt.name} {label}", self.comm.all_reduce(view),
                             [ref(x) for x in xs])
                self.routed(f"{dt.name} {label}", before, nvlink=True)

    def repeated(self) -> None:
        """1000 back-to-back calls alternating 1 and 32 blocks; every result checked on GPU."""
        counts, n = (4097, 65536 + 3), self.n
        xs = [small_ints(self.seed, 500, r, counts[1], np.float32) for r in range(n)]
        total = cp.asarray(np.sum(np.stack(xs), axis=0))
        base = cp.asarray(xs[self.rank])
        err = cp.zeros((), cp.float32)
        before = self.calls()
        for i in range(1000):
            c = counts[i % 2]
            got = self.comm.all_reduce(base[:c] + i)
            err = cp.maximum(err, cp.abs(got - (total[:c] + n * i)).max())
        self.cases += 1
        if float(err) != 0:
            self.fails.append(f"repeated float32: max error {float(err)} after 1000 calls")
        want = before + (1000 if self.expect else 0)
        if self.calls() != want:
            self.fails.append(f"repeated: nvlink calls {self.calls()}, expected {want}")
        # 16-bit too: offsets i % 16 keep the sums exact.
        dt = dtypes()[-1]
        xs16 = [small_ints(self.seed, 501, r, counts[0], dt) for r in range(n)]
        total16 = cp.asarray(np.sum(np.stack(xs16).astype(np.float32), axis=0))
        base16 = cp.asarray(xs16[self.rank])
        err = cp.zeros((), cp.float32)
        for i in range(200):
            got = self.comm.all_reduce((base16.astype(cp.float32) + i % 16).astype(dt))
            err = cp.maximum(err, cp.abs(got.astype(cp.float32) - (total16 + n * (i % 16))).max())
        self.cases += 1
        if float(err) != 0:
            self.fails.append(f"repeated {dt.name}: max error {float(err)} after 200 calls")

    def graph(self) -> None:
        """Capture nvlink and NCCL all_reduces in one graph; replay 50 times on new inputs."""
        kinds = [(1000, np.dtype(np.float32)), (4097, dtypes()[-1]),
                 (65536 + 3, np.dtype(np.float16)),
                 (self.max_bytes // 4 + 1, np.dtype(np.float32))]  # the last goes to NCCL
        bufs = [cp.zeros(count, dt) for count, dt in kinds]
        stream = cp.cuda.get_current_stream()
        for x in bufs:  # warm-up: fills the memory pool, creates nothing during capture
            self.comm.all_reduce(x)
        stream.synchronize()
        before = self.calls()
        stream.begin_capture()
        outs = [self.comm.all_reduce(x) for x in bufs]
        graph = stream.end_capture()
        if self.expect and self.calls() != before + 3:
            self.fails.append(f"graph: {self.calls() - before} nvlink calls captured, expected 3")
        for t in range(50):
            ins = [[make(self.seed, 3000 + 10 * t + k, r, (count,), dt) for r in range(self.n)]
                   for k, (count, dt) in enumerate(kinds)]
            for k, x in enumerate(bufs):
                x[...] = cp.asarray(ins[k][self.rank])
            graph.launch(stream)
            stream.synchronize()
            for k, (count, dt) in enumerate(kinds):
                self.compare(f"graph replay {t}: {dt.name} count={count}", outs[k], ins[k],
                             nvlink=k < 3)

    def nccl_routes(self) -> None:
        """Messages the nvlink path must leave to NCCL still reduce right."""
        n, f32 = self.n, np.dtype(np.float32)
        big = self.max_bytes // 4 + 1
        xs = [make(self.seed, 900, r, (big,), f32) for r in range(n)]
        before = self.calls()
        self.compare("above max_bytes", self.comm.all_reduce(cp.asarray(xs[self.rank])), xs,
                     nvlink=False)
        self.routed("above max_bytes", before, nvlink=False)
        xs = [make(self.seed, 901, r, (1000,), f32) for r in range(n)]
        before = self.calls()
        got = cp.asnumpy(self.comm.all_reduce(cp.asarray(xs[self.rank]), op="max"))
        self.cases += 1
        if not np.array_equal(got, np.max(np.stack(xs), axis=0)):
            self.fails.append("op=max: wrong result")
        self.routed("op=max", before, nvlink=False)
        before = self.calls()
        group = list(range(n))[::-1]
        self.compare("reversed group",
                     self.comm.all_reduce(cp.asarray(xs[self.rank]), group=group), xs,
                     nvlink=False)
        self.routed("reversed group", before, nvlink=False)
        x64 = [x.astype(np.float64) for x in xs]
        before = self.calls()
        got = cp.asnumpy(self.comm.all_reduce(cp.asarray(x64[self.rank])))
        self.cases += 1
        if not np.allclose(got, np.sum(np.stack(x64), axis=0), rtol=1e-12, atol=1e-12):
            self.fails.append("float64: wrong result")
        self.routed("float64", before, nvlink=False)

    def fused_norm(self) -> None:
        """all_reduce_add_rmsnorm against the unfused pair (this all_reduce, then the CUDA
        AddRMSNorm kernel): S bit-identical, Y within a 16-bit rounding (the sum of squares
        is added in another order); eager and graph-replayed; None where it must decline."""
        from dist_rt.runtime.cuda.kernels import add_rmsnorm

        class Layer:  # the attributes add_rmsnorm reads
            def attr(self, name, default=None):
                return {"epsilon": 1e-5}.get(name, default)

        layer, n = Layer(), self.n
        stream = cp.cuda.get_current_stream()
        rows_max = self.nv.max_blocks if self.nv is not None else 32
        for d, dt in enumerate(dtypes()):
            rtol = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}[dt.name]
            for k, (rows, cols) in enumerate([(1, 4096), (16, 4096), (3, 1032), (1, 8),
                                              (rows_max, 2048), (2, 12288)]):
                case = 7000 + 100 * d + k
                xs = [make(self.seed, case, r, (rows, cols), dt) for r in range(n)]
                res = cp.asarray(make(self.seed, case, n, (rows, cols), dt))  # same everywhere
                w = cp.asarray(make(self.seed, case, n + 1, (cols,), dt))
                x = cp.asarray(xs[self.rank])
                want_s, want_y = add_rmsnorm(layer, [self.comm.all_reduce(x), res, w], None)
                before = self.calls()
                got = self.comm.all_reduce_add_rmsnorm(x, res, w, 1e-5)
                label = f"fused {dt.name} {rows}x{cols}"
                self.cases += 1
                if got is None:
                    if self.expect and rows * cols * dt.itemsize <= self.max_bytes:
                        self.fails.append(f"{label}: declined")
                    continue
                self.routed(label, before, nvlink=True)
                self._same(label, got, want_s, want_y, rtol)
                # The same call captured and replayed on new inputs.
                stream.synchronize()
                stream.begin_capture()
                got = self.comm.all_reduce_add_rmsnorm(x, res, w, 1e-5)
                graph = stream.end_capture()
                for t in range(3):
                    x[...] = cp.asarray(make(self.seed, case + 50 + t, self.rank, (rows, cols),
                                             dt))
                    graph.launch(stream)
                    want_s, want_y = add_rmsnorm(layer, [self.comm.all_reduce(x), res, w], None)
                    self._same(f"{label} graph replay {t}", got, want_s, want_y, rtol)
        # Declines: too many rows for one block each, rows not whole 16-byte vectors.
        for label, shape in [("rows > max_blocks", (rows_max + 1, 64)), ("cols % 8", (2, 12))]:
            x = cp.ones(shape, cp.float16)
            self.cases += 1
            if self.comm.all_reduce_add_rmsnorm(x, x, x[0], 1e-5) is not None:
                self.fails.append(f"fused {label}: not declined")

    def _same(self, label, got, want_s, want_y, rtol) -> None:
        s, y = (cp.asnumpy(a).astype(np.float64) for a in got)
        ws, wy = (cp.asnumpy(a).astype(np.float64) for a in (want_s, want_y))
        if not np.array_equal(s, ws):
            self.fails.append(f"{label}: S differs from the unfused pair at "
                              f"{int((s != ws).sum())} places")
        err = np.abs(y - wy) - rtol * (1 + np.abs(wy))
        if (err > 0).any():
            self.fails.append(f"{label}: Y off by up to {float(np.abs(y - wy).max())}")
        if self.expect:
            self.digests.append(hashlib.sha1(s.tobytes() + y.tobytes()).hexdigest())

    def agree(self) -> None:
        """Every rank got bit-identical results (rank order of the sum)."""
        everyone = self.comm.all_gather_object(self.digests)
        self.cases += 1
        if any(d != everyone[0] for d in everyone):
            diff = sum(a != b for a, b in zip(self.digests, everyone[0], strict=False))
            self.fails.append(f"results differ between ranks ({diff} cases differ from rank 0)")


def run_check(comm) -> int:
    active = comm.nvlink is not None
    print(f"PATH rank {comm.rank}/{comm.size} nvlink={int(active)} {comm.nvlink_status}",
          flush=True)
    t0 = time.perf_counter()
    ck = Checker(comm)
    if active != ck.expect:
        ck.fails.append(f"nvlink active={active}, expected {ck.expect}: {comm.nvlink_status}")
    for step in (ck.sizes, ck.repeated, ck.graph, ck.nccl_routes, ck.fused_norm, ck.agree):
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - report every failure, keep the ranks in step
            ck.fails.append(f"{step.__name__}: {type(exc).__name__}: {exc}")
    print(f"SUMMARY rank {comm.rank}/{comm.size} cases={ck.cases} failures={len(ck.fails)} "
          f"seconds={time.perf_counter() - t0:.1f}", flush=True)
    for f in ck.fails[:30]:
        print(f"FAIL rank {comm.rank}: {f}", flush=True)
    return 1 if ck.fails else 0


def run_bench(comm) -> int:
    dt = dtypes()[-1]
    path_on = comm.nvlink is not None
    stream = cp.cuda.get_current_stream()
    if comm.rank == 0:
        print(f"# {comm.nvlink_status}", flush=True)
    for size in (8, 8 << 10, 32 << 10, 256 << 10):
        x = cp.ones(size // dt.itemsize, dt)
        for _ in range(20):
            comm.all_reduce(x)
        stream.synchronize()
        stream.begin_capture()
        out = None
        for _ in range(10):
            out = None  # the pool hands the same block back: nothing is allocated in capture
            out = comm.all_reduce(x)
        graph = stream.end_capture()
        for _ in range(10):
            graph.launch(stream)
        comm.barrier()
        marks = [(cp.cuda.Event(), cp.cuda.Event()) for _ in range(100)]
        for start, end in marks:
            start.record(stream)
            graph.launch(stream)
            end.record(stream)
        stream.synchronize()
        per_call = sorted(cp.cuda.get_elapsed_time(s, e) * 1e3 / 10 for s, e in marks)
        median = max(comm.all_gather_object(per_call[50]))  # the slowest rank's median
        ok = bool(float(out.astype(cp.float32).max()) == comm.size)
        path = "nvlink" if path_on and size <= comm.nvlink.max_bytes else "nccl"
        if comm.rank == 0:
            print(f"LAT path={path} ranks={comm.size} dtype={dt.name} bytes={size} "
                  f"median_us={median:.2f} p10_us={per_call[10]:.2f} p90_us={per_call[90]:.2f} "
                  f"correct={int(ok)}", flush=True)
        del graph, out
    return 0


def run_stall_graph(comm) -> int:
    if comm.nvlink is None:
        print(f"SKIP nvlink inactive: {comm.nvlink_status}", flush=True)
        return 0
    stream = cp.cuda.get_current_stream()
    x = cp.ones(1024, cp.float32)
    comm.all_reduce(x)
    stream.synchronize()
    stream.begin_capture()
    comm.all_reduce(x)
    graph = stream.end_capture()
    graph.launch(stream)
    stream.synchronize()
    comm.barrier()
    if comm.rank == 1:
        time.sleep(120)
        return 0
    print(f"REPLAY-STALL rank {comm.rank}", flush=True)
    graph.launch(stream)
    stream.synchronize()  # must raise once the kernel traps
    print("NO-TRAP: the replay finished without its peer", flush=True)
    return 0


def main() -> int:
    comm = create_communicator("nccl")
    # A non-blocking stream of our own: the legacy default stream cannot be captured.
    stream = cp.cuda.Stream(non_blocking=True)
    stream.use()
    mode = sys.argv[1]
    if mode == "stall_graph":
        return run_stall_graph(comm)  # no close(): rank 1 never comes back in time
    code = run_check(comm) if mode == "check" else run_bench(comm)
    comm.barrier()
    comm.close()
    return code


if __name__ == "__main__":
    sys.exit(main())

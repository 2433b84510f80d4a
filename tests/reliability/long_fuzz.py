"""Long fuzz run of the reliability properties (not collected by pytest).

Usage: ``PYTHONPATH=. python tests/reliability/long_fuzz.py [--seconds 300] [--seed 0]``.
Splits the time between the ONNX, plan file and feed properties, then measures RSS over
10,000 executes and 100 engine cycles. Prints cases tried, outcomes and failures; exits 1 on
any failure. The address space is capped (8 GiB) so an attempt to allocate a huge tensor
shows up as a MemoryError failure instead of an OOM kill.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import resource
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _fuzz_common as fc  # noqa: E402
import test_leaks  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
    warnings.simplefilter("ignore")
    r = random.Random(args.seed)
    budget = args.seconds / 3
    failures: list[str] = []

    def loop(name, one):
        counts: collections.Counter = collections.Counter()
        t0 = time.monotonic()
        while time.monotonic() - t0 < budget:
            try:
                counts[one()] += 1
            except fc.Bug as exc:
                counts["FAILURE"] += 1
                failures.append(f"{name}: {str(exc).splitlines()[0][:300]}")
        n = sum(counts.values())
        print(f"{name}: {n} cases in {time.monotonic() - t0:.0f} s, failures "
              f"{counts['FAILURE']}; {dict(counts.most_common())}", flush=True)

    def onnx_case():
        base = r.randrange(len(fc.BASES))
        muts = [(r.choice(fc.ONNX_KINDS), r.randrange(2**32)) for _ in range(r.randint(1, 3))]
        return fc.check_onnx(fc.mutate_onnx(base, muts), (base, muts))

    tmp = tempfile.mkdtemp()
    good = os.path.join(tmp, "good.plan")
    fc.build_plan(good)
    data = open(good, "rb").read()
    bad = os.path.join(tmp, "bad.plan")

    def plan_case():
        muts = [(r.choice(fc.PLAN_KINDS), r.randrange(2**32)) for _ in range(r.randint(1, 2))]
        b = data
        for kind, seed in muts:
            b = fc.mutate_plan(b, kind, seed) if len(b) >= 64 else b
        with open(bad, "wb") as f:
            f.write(b)
        return fc.check_plan(bad, muts)

    engines = [fc.Builder(fc.BuilderConfig(device="cpu")).build(fc.parse_onnx(fc.base_bytes(i)))
               for i in (0, 3)]

    def feed_case():
        return fc.check_feeds(r.choice(engines), r.choice(fc.FEED_KINDS), r.randrange(2**32))

    loop("onnx", onnx_case)
    loop("planfile", plan_case)
    loop("feeds", feed_case)
    t0 = time.monotonic()
    grow = test_leaks.execute_growth(10_000)
    print(f"leaks: 10,000 executes (smaller of two windows): RSS {grow:+.2f} MiB "
          f"({time.monotonic() - t0:.0f} s)")
    t0 = time.monotonic()
    grow = test_leaks.cycle_growth(100)
    print(f"leaks: 100 build/context/close cycles: RSS {grow:+.2f} MiB "
          f"({time.monotonic() - t0:.0f} s)")
    for line in sorted(set(failures)):
        print("FAILURE", line)
    print(f"total failures: {len(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

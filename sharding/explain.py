"""``python -m sharding.explain MODEL.onnx -n 4 [--svg FILE] [--plan HINTS]``.

Parses the model, plans it over N ranks and prints :func:`sharding.explain`'s table (plan
summary, one row per layer with its strategy, output placements and the collectives that
follow it, per-rank weight memory). ``--svg`` also draws the plan. The implementation lives
in ``sharding._explain`` so that this module's name does not shadow the
``sharding.explain(plan)`` function.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """CLI entry point.

    Args:
        argv: Arguments (``sys.argv[1:]`` when None).

    Returns:
        0 on success, 1 on a dist_rt error (one line on stderr).
    """
    import sharding
    from dist_rt import parse_onnx
    from dist_rt.errors import DistRtError
    from sharding._explain import explain

    ap = argparse.ArgumentParser(prog="python -m sharding.explain",
                                 description="Plan MODEL.onnx over N ranks and explain it.")
    ap.add_argument("model", help="ONNX model")
    ap.add_argument("-n", "--world-size", type=int, default=2, help="number of ranks")
    ap.add_argument("--svg", default=None, help="also draw the plan into this SVG file")
    ap.add_argument("--plan", default=None, help="hints: replicate or a JSON file")
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None,
                    help="cost model of these devices (default: what this machine has)")
    ap.add_argument("--shapes", default=None, metavar="name:2x16,...",
                    help="input sizes for costing (default: symbolic dims = 1)")
    args = ap.parse_args(argv)
    try:
        shapes = None
        if args.shapes:
            shapes = {k: tuple(int(d) for d in v.split("x")) for k, v in
                      (item.rsplit(":", 1) for item in args.shapes.split(","))}
        network = parse_onnx(args.model)
        plan = sharding.plan(network, args.world_size, hints=args.plan, device=args.device,
                             input_shapes=shapes)
        print(explain(plan, args.svg))
    except DistRtError as exc:
        print(f"sharding.explain: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"sharding.explain: error: --shapes {args.shapes!r}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

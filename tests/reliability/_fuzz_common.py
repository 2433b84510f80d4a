"""Shared properties of the reliability fuzzers (pytest tests and ``long_fuzz.py``).

Each property takes a small valid input (an ONNX model, a plan file, a feed dict), damages it
with one to three seeded mutations and runs the dist_rt pipeline. The invariant: the run
either succeeds (and matches onnxruntime when ORT also accepts the model) or raises a
:class:`dist_rt.errors.DistRtError`. Any other exception type is a bug; :class:`Bug` carries
it with the mutation list so a failure can be replayed.

Mutations are plain functions of ``(proto, random.Random)`` so hypothesis only draws
``(kind, seed)`` pairs: the same cases replay outside hypothesis in ``long_fuzz.py``.
"""

from __future__ import annotations

import json
import random
import struct
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dist_rt import Builder, BuilderConfig, Engine, parse_onnx
from dist_rt.errors import DistRtError, InputError, PlanFileError

#: Inputs with more elements than this are not fed (a 2**40 dim must fail before, not OOM).
MAX_FEED_ELEMENTS = 1 << 20
HUGE = [2**31, 2**40, 2**62, -2, 0]


class Bug(AssertionError):
    """A non-DistRtError escaped (or a wrong answer): the case and the traceback."""


# -- base models -----------------------------------------------------------------------------

def _init(name: str, arr: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(arr, name)


def mlp_model() -> onnx.ModelProto:
    """x[batch, 8] -> MatMul -> Add -> Relu -> Gemm -> Softmax -> y[batch, 4]."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="mm"),
             helper.make_node("Add", ["h0", "b1"], ["h1"], name="add"),
             helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
             helper.make_node("Gemm", ["h2", "w2", "b2"], ["h3"], name="gemm", alpha=0.5,
                              transB=1),
             helper.make_node("Softmax", ["h3"], ["y"], name="softmax", axis=-1)]
    inits = [_init("w1", rng.standard_normal((8, 16)).astype(np.float32)),
             _init("b1", rng.standard_normal(16).astype(np.float32)),
             _init("w2", rng.standard_normal((4, 16)).astype(np.float32)),
             _init("b2", rng.standard_normal(4).astype(np.float32))]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def shape_model() -> onnx.ModelProto:
    """Transpose -> Reshape (constant target) -> Concat -> ReduceMean -> Slice -> Expand."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="tr", perm=[2, 0, 1]),
             helper.make_node("Reshape", ["t", "shape"], ["r"], name="reshape"),
             helper.make_node("Concat", ["r", "c"], ["cat"], name="concat", axis=1),
             helper.make_node("ReduceMean", ["cat", "axes"], ["m"], name="mean", keepdims=1),
             helper.make_node("Slice", ["cat", "starts", "ends", "saxes"], ["s"], name="slice"),
             helper.make_node("Expand", ["m", "eshape"], ["e"], name="expand"),
             helper.make_node("Add", ["s", "e"], ["y"], name="add")]
    inits = [_init("shape", np.array([4, -1], np.int64)),
             _init("c", rng.standard_normal((4, 2)).astype(np.float32)),
             _init("axes", np.array([1], np.int64)),
             _init("starts", np.array([1], np.int64)), _init("ends", np.array([5], np.int64)),
             _init("saxes", np.array([1], np.int64)),
             _init("eshape", np.array([4, 4], np.int64))]
    graph = helper.make_graph(
        nodes, "shapes", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def conv_model() -> onnx.ModelProto:
    """Conv -> Relu -> MaxPool -> Flatten -> MatMul on a 1x3x8x8 image."""
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1],
                              strides=[1, 1], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
             helper.make_node("MatMul", ["f", "fc"], ["y"], name="fc")]
    inits = [_init("w", (0.2 * rng.standard_normal((4, 3, 3, 3))).astype(np.float32)),
             _init("b", rng.standard_normal(4).astype(np.float32)),
             _init("fc", (0.1 * rng.standard_normal((64, 5))).astype(np.float32))]
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def llama_model() -> onnx.ModelProto:
    """The tiniest Llama of :mod:`dist_rt.models` (1 layer, hidden 16, vocab 32, seq 4)."""
    from dist_rt.models import LlamaConfig, make_llama  # noqa: PLC0415

    cfg = LlamaConfig(vocab=32, hidden=16, layers=1, heads=2, kv_heads=1, mlp=32, max_seq=8)
    return make_llama(cfg, batch=1, seq=4)


BASES: list[Callable[[], onnx.ModelProto]] = [mlp_model, shape_model, conv_model, llama_model]
_CACHE: dict[int, bytes] = {}


def base_bytes(index: int) -> bytes:
    """Serialized base model ``index`` (cached)."""
    if index not in _CACHE:
        _CACHE[index] = BASES[index]().SerializeToString()
    return _CACHE[index]


# -- ONNX mutations --------------------------------------------------------------------------

def _value_infos(g: onnx.GraphProto) -> list:
    return list(g.input) + list(g.output)


def _drop_input(m, r):
    nodes = [n for n in m.graph.node if n.input]
    if nodes:
        n = r.choice(nodes)
        del n.input[r.randrange(len(n.input))]


def _dangling(m, r):
    n = r.choice(m.graph.node)
    if n.input:
        n.input[r.randrange(len(n.input))] = r.choice(["nowhere", "", "y", n.output[0]])


def _cycle(m, r):
    nodes = list(m.graph.node)
    if len(nodes) >= 2:
        i = r.randrange(len(nodes) - 1)
        j = r.randrange(i + 1, len(nodes))
        if nodes[i].input:
            nodes[i].input[0] = nodes[j].output[0]


def _io_dim(m, r):
    vi = r.choice(_value_infos(m.graph))
    dims = vi.type.tensor_type.shape.dim
    if dims:
        d = dims[r.randrange(len(dims))]
        choice = r.random()
        if choice < 0.4:
            d.dim_value = r.choice(HUGE + [1, 3, 7])
        elif choice < 0.7:
            d.dim_param = r.choice(["n", "batch", "", "?"])
        else:
            d.Clear()
    elif r.random() < 0.5:
        vi.type.tensor_type.shape.dim.add().dim_value = r.choice([1, 2, 2**40])


def _io_rank(m, r):
    vi = r.choice(_value_infos(m.graph))
    shape = vi.type.tensor_type.shape
    if shape.dim and r.random() < 0.5:
        del shape.dim[r.randrange(len(shape.dim))]
    else:
        shape.dim.add().dim_value = r.choice([1, 2, 5])


def _io_dtype(m, r):
    vi = r.choice(_value_infos(m.graph))
    vi.type.tensor_type.elem_type = r.choice([0, 2, 6, 7, 8, 9, 10, 11, 16, 99])


def _init_dims(m, r):
    if m.graph.initializer:
        t = r.choice(m.graph.initializer)
        if t.dims and r.random() < 0.6:
            t.dims[r.randrange(len(t.dims))] = r.choice(HUGE + [1, 3])
        else:
            t.dims.append(r.choice([1, 2, 2**40]))


def _init_dtype(m, r):
    if m.graph.initializer:
        r.choice(m.graph.initializer).data_type = r.choice([1, 6, 7, 10, 11, 16, 40, 0])


def _init_drop(m, r):
    if m.graph.initializer:
        del m.graph.initializer[r.randrange(len(m.graph.initializer))]


def _init_values(m, r):
    """Integer initializers (shapes, axes, starts) get absurd values; floats get inf/nan."""
    if not m.graph.initializer:
        return
    t = r.choice(m.graph.initializer)
    arr = numpy_helper.to_array(t).copy()
    if arr.size == 0:
        return
    flat = arr.reshape(-1)
    i = r.randrange(flat.size)
    if arr.dtype.kind in "iu":
        flat[i] = r.choice([2**40, -(2**40), 2**62, -1, 0, 99, -99])
    elif arr.dtype.kind == "f":
        flat[i] = r.choice([np.inf, -np.inf, np.nan, 1e30])
    t.CopyFrom(numpy_helper.from_array(arr, t.name))


def _attr_value(m, r):
    nodes = [n for n in m.graph.node if n.attribute]
    if not nodes:
        return
    n = r.choice(nodes)
    a = n.attribute[r.randrange(len(n.attribute))]
    name = a.name
    new = r.choice([
        lambda: helper.make_attribute(name, r.choice([-(2**40), -9, -1, 0, 2**40, 99])),
        lambda: helper.make_attribute(name, r.choice([float("nan"), -1.5, 1e30])),
        lambda: helper.make_attribute(name, "garbage"),
        lambda: helper.make_attribute(name, [r.randrange(-5, 9) for _ in range(r.randrange(6))]),
        lambda: helper.make_attribute(name, [0.5, 2.5]),
        lambda: helper.make_attribute(name, numpy_helper.from_array(np.zeros(2, np.float32))),
    ])()
    a.CopyFrom(new)


def _attr_add(m, r):
    n = r.choice(m.graph.node)
    name = r.choice(["axis", "perm", "transA", "kernel_shape", "keepdims", "bogus", "to",
                     "group", "dilations", "auto_pad"])
    value = r.choice([0, 1, -1, 5, 2**40, "SAME_UPPER", "x", [1, 0], [2, 2, 2]])
    del_ = [i for i, a in enumerate(n.attribute) if a.name == name]
    for i in reversed(del_):
        del n.attribute[i]
    n.attribute.append(helper.make_attribute(name, value))


def _op_type(m, r):
    n = r.choice(m.graph.node)
    n.op_type = r.choice(["Relu", "Sigmoid", "MatMul", "Add", "Concat", "Reshape", "NoSuchOp",
                          "Transpose", "Softmax", "Gather", "Where", "Loop", "If", "Conv"])
    if r.random() < 0.3:
        n.domain = r.choice(["com.microsoft", "ai.onnx.ml", "bogus.domain", "dist_rt"])


def _dup_output(m, r):
    nodes = list(m.graph.node)
    if len(nodes) >= 2:
        a, b = r.sample(nodes, 2)
        b.output[0] = a.output[0]


def _opset(m, r):
    m.opset_import[0].version = r.choice([1, 7, 11, 12, 13, 21, 22, 99, 0])


def _graph_output(m, r):
    choice = r.random()
    if choice < 0.4:
        m.graph.output[0].name = r.choice(["nowhere", m.graph.input[0].name, "h0", "t"])
    elif choice < 0.7:
        del m.graph.output[:]
    else:
        m.graph.output.extend([helper.make_tensor_value_info(
            m.graph.node[0].output[0], TensorProto.FLOAT, None)])


def _drop_node(m, r):
    del m.graph.node[r.randrange(len(m.graph.node))]


def _swap_nodes(m, r):
    nodes = list(m.graph.node)
    if len(nodes) >= 2:
        i, j = r.sample(range(len(nodes)), 2)
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(nodes[i])
        b.CopyFrom(nodes[j])
        m.graph.node[i].CopyFrom(b)
        m.graph.node[j].CopyFrom(a)


PROTO_MUTATIONS: dict[str, Callable[[onnx.ModelProto, random.Random], None]] = {
    "drop_input": _drop_input, "dangling": _dangling, "cycle": _cycle, "io_dim": _io_dim,
    "io_rank": _io_rank, "io_dtype": _io_dtype, "init_dims": _init_dims,
    "init_dtype": _init_dtype, "init_drop": _init_drop, "init_values": _init_values,
    "attr_value": _attr_value, "attr_add": _attr_add, "op_type": _op_type,
    "dup_output": _dup_output, "opset": _opset, "graph_output": _graph_output,
    "drop_node": _drop_node, "swap_nodes": _swap_nodes,
}
BYTE_MUTATIONS = ("flip_bytes", "truncate", "random_bytes")
ONNX_KINDS = sorted(PROTO_MUTATIONS) + list(BYTE_MUTATIONS)


def mutate_onnx(base: int, mutations: list[tuple[str, int]]) -> bytes:
    """Serialized base model ``base`` after ``mutations`` (``(kind, seed)`` pairs)."""
    data = base_bytes(base)
    for kind, seed in mutations:
        r = random.Random(seed)
        if kind in PROTO_MUTATIONS:
            model = onnx.ModelProto()
            try:
                model.ParseFromString(data)
            except Exception:  # noqa: BLE001 - earlier byte damage; keep damaging bytes
                continue
            if not model.graph.node:
                continue
            try:
                PROTO_MUTATIONS[kind](model, r)
            except (ValueError, TypeError, IndexError, OverflowError, KeyError):
                continue  # the mutation itself cannot apply to an already damaged proto
            data = model.SerializeToString()
        else:
            data = mutate_bytes(data, kind, r)
    return data


def mutate_bytes(data: bytes, kind: str, r: random.Random) -> bytes:
    """Byte-level damage: flip 1-8 bytes, truncate, or replace with random bytes."""
    if kind == "truncate":
        return data[:r.randrange(len(data) + 1)]
    if kind == "random_bytes":
        return r.randbytes(r.randrange(0, 256))
    buf = bytearray(data)
    for _ in range(r.randrange(1, 9)):
        if buf:
            buf[r.randrange(len(buf))] = r.randrange(256)
    return bytes(buf)


# -- the pipeline property -------------------------------------------------------------------

def feeds_for(bindings: list, seed: int = 0) -> dict[str, np.ndarray] | None:
    """Random feeds for engine bindings (symbolic dims = 2); None when too big to feed."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, dtype, shape in bindings:
        dims = tuple(2 if not isinstance(d, int) else d for d in shape)
        if int(np.prod(dims, dtype=object)) > MAX_FEED_ELEMENTS:
            return None
        dt = np.dtype(dtype)
        if dt.kind in "iu":
            feeds[name] = rng.integers(0, 4, dims).astype(dt)
        elif dt.kind == "b":
            feeds[name] = rng.integers(0, 2, dims).astype(bool)
        else:
            feeds[name] = rng.standard_normal(dims).astype(dt)
    return feeds


def _ort_outputs(data: bytes, feeds: dict) -> list | None:
    try:
        import onnxruntime as ort  # noqa: PLC0415 - optional reference

        opts = ort.SessionOptions()
        opts.log_severity_level = 4
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        return sess.run(None, feeds)
    except Exception:  # noqa: BLE001 - ORT rejecting the model is not our bug
        return None


def check_onnx(data: bytes, case: Any = None, compare: bool = True) -> str:
    """Run parse -> build -> execute on ``data``; return the outcome.

    Returns:
        ``"error:<Type>"`` (a DistRtError), ``"ok"`` (ran; matched ORT or ORT rejected it),
        ``"no-feed"`` (built, inputs too large to feed).

    Raises:
        Bug: Any exception that is not a DistRtError, or outputs that differ from ORT.
    """
    stage = "parse"
    try:
        net = parse_onnx(data)
        stage = "build"
        engine = Builder(BuilderConfig(device="cpu")).build(net)
        feeds = feeds_for(engine.inputs)
        if feeds is None:
            return "no-feed"
        stage = "execute"
        with engine.create_execution_context() as ctx:
            out = ctx.execute(feeds)
    except DistRtError as exc:
        if not str(exc).strip():
            raise Bug(f"{case}: {type(exc).__name__} with an empty message at {stage}") from exc
        return f"error:{type(exc).__name__}"
    except Exception as exc:  # noqa: BLE001 - the invariant under test
        raise Bug(f"{case}: {type(exc).__name__} escaped at {stage}: {exc}\n"
                  f"{traceback.format_exc()}") from exc
    if compare:
        ref = _ort_outputs(data, feeds)
        if ref is not None and len(ref) == len(out):
            for (name, got), want in zip(out.items(), ref, strict=True):
                want = np.asarray(want)
                # inf/nan weights (init_values) make inf - inf order-dependent: compare
                # the positions both sides computed as finite.
                both = np.isfinite(got) & np.isfinite(want) if got.dtype.kind == "f" else None
                if got.shape != want.shape or (both is not None and not np.allclose(
                        got[both], want[both], rtol=1e-3, atol=1e-4)):
                    raise Bug(f"{case}: output '{name}' differs from onnxruntime: shape "
                              f"{got.shape} vs {want.shape}, max err "
                              f"{_maxerr(got, want)}")
    return "ok"


def _maxerr(a: np.ndarray, b: np.ndarray) -> float:
    try:
        return float(np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64))))
    except ValueError:
        return float("nan")


# -- plan files ------------------------------------------------------------------------------

PRE = struct.Struct("<8sIIQQ32s")


def build_plan(path: str) -> Engine:
    """Build the MLP base model into a CPU engine and save it to ``path``."""
    engine = Builder(BuilderConfig(device="cpu")).build(parse_onnx(base_bytes(0)))
    engine.save(path)
    return engine


def reseal(data: bytes, header: Any, hlen_override: int | None = None,
           plen_override: int | None = None) -> bytes:
    """A plan file with ``header`` (any JSON value) and a valid checksum (a forger's file)."""
    import hashlib  # noqa: PLC0415

    magic, ver, res, hlen, plen, _ = PRE.unpack(data[:64])
    start = 64 + hlen + (-(64 + hlen)) % 64
    blob = json.dumps(header).encode()
    pad = b"\0" * ((-(64 + len(blob))) % 64)
    rest = blob + pad + data[start:]
    return PRE.pack(magic, ver, res, len(blob) if hlen_override is None else hlen_override,
                    plen if plen_override is None else plen_override,
                    hashlib.sha256(rest).digest()) + rest


def _absurd(r: random.Random) -> Any:
    return r.choice([-1, 2**40, 2**63, -(2**63), 1.5, "x", None, [], {}, True, [2**40, 2**40],
                     [-1], 10**30])


def edit_header(header: dict, r: random.Random) -> None:
    """One absurd edit of a decoded header: sizes, offsets, shapes, dtypes, fields."""
    choice = r.randrange(9)
    weights = header.get("weights") or [{}]
    w = r.choice(weights)
    if choice == 0:
        w[r.choice(["offset", "nbytes"])] = _absurd(r)
    elif choice == 1:
        w["shape"] = r.choice([[2**40, 2**40], [2**62], [-1, 4], [1.5], "x", [2**31] * 3])
    elif choice == 2:
        w["dtype"] = r.choice(["float128", "object", "", 3, None, "str"])
    elif choice == 3:
        key = r.choice(sorted(header))
        header[key] = _absurd(r)
    elif choice == 4:
        net = header.get("network") or {}
        tensors = net.get("tensors") or [{}]
        t = r.choice(tensors)
        t[r.choice(["shape", "dtype", "name", "kind"])] = _absurd(r)
    elif choice == 5:
        net = header.get("network") or {}
        layers = net.get("layers") or [{}]
        lay = r.choice(layers)
        key = r.choice(["op_type", "opset", "inputs", "outputs", "attributes", "nb_ranks",
                        "domain", "name"])
        lay[key] = _absurd(r) if r.random() < 0.7 else "NoSuchOp"
    elif choice == 6:
        net = header.get("network") or {}
        layers = net.get("layers") or [{}]
        attrs = r.choice(layers).get("attributes")
        if isinstance(attrs, dict) and attrs:
            attrs[r.choice(sorted(attrs))] = r.choice(
                [{"__ndarray__": {"dtype": "float32", "shape": [2**40], "base64": ""}},
                 {"__ndarray__": {"dtype": "float32", "shape": [2], "base64": "!!"}},
                 {"__bytes__": 5}, {"__dict__": 3}, _absurd(r)])
    elif choice == 7:
        header[r.choice(["rank", "world_size"])] = r.choice([-1, 5, 2**40, "0", None])
    else:
        header.pop(r.choice(sorted(header)), None)


PLAN_KINDS = ("flip", "truncate", "header_edit", "preamble_lengths", "append", "version")


def mutate_plan(data: bytes, kind: str, seed: int) -> bytes:
    """One seeded damage of plan file bytes."""
    r = random.Random(seed)
    if kind == "flip":
        buf = bytearray(data)
        for _ in range(r.randrange(1, 5)):
            buf[r.randrange(len(buf))] ^= 1 << r.randrange(8)
        return bytes(buf)
    if kind == "truncate":
        return data[:r.randrange(len(data))]
    if kind == "append":
        return data + r.randbytes(r.randrange(1, 100))
    if len(data) < 64:
        return data
    hlen = PRE.unpack(data[:64])[3]
    try:
        header = json.loads(data[64:64 + hlen])
    except ValueError:  # an earlier mutation already broke the header
        return data
    if not isinstance(header, dict):
        return data
    if kind == "header_edit":
        for _ in range(r.randrange(1, 4)):
            try:
                edit_header(header, r)
            except (TypeError, AttributeError, KeyError, IndexError, ValueError):
                pass  # an earlier edit replaced the field this one wanted to change
        return reseal(data, header)
    if kind == "preamble_lengths":
        return reseal(data, header, hlen_override=r.choice([0, 1, 2**40, 2**63, hlen + 64]),
                      plen_override=r.choice([None, 0, 2**40, 2**64 - 1]))
    header[r.choice(["dist_rt_version", "format_version"])] = r.choice(
        ["99.0.0", 2, "0.0", None, 99])
    return reseal(data, header)


def check_plan(path: str, case: Any = None) -> str:
    """Load a (damaged) plan file and run it; only PlanFileError & co. may come out.

    Returns:
        ``"ok"`` or ``"error:<Type>"``.

    Raises:
        Bug: Any other exception.
    """
    try:
        engine = Engine.load(path)
        feeds = feeds_for(engine.inputs)
        if feeds is None:
            return "no-feed"
        with engine.create_execution_context() as ctx:
            ctx.execute(feeds)
    except PlanFileError as exc:
        return f"error:{type(exc).__name__}"
    except DistRtError as exc:
        # Past the checksum a forged header may still describe a graph that fails later
        # (PlanMismatchError, ShapeError...): typed and clear is what counts.
        return f"error:{type(exc).__name__}"
    except Exception as exc:  # noqa: BLE001 - the invariant under test
        raise Bug(f"{case}: {type(exc).__name__} escaped loading a damaged plan file: {exc}\n"
                  f"{traceback.format_exc()}") from exc
    return "ok"


# -- feeds -----------------------------------------------------------------------------------

def bad_feeds(bindings: list, kind: str, seed: int) -> Any:
    """Feeds for ``bindings`` with one seeded defect of ``kind``."""
    r = random.Random(seed)
    feeds: dict[str, Any] = dict(feeds_for(bindings, seed) or {})
    name = r.choice([b[0] for b in bindings])
    arr = feeds[name]
    if kind == "missing":
        feeds.pop(name)
    elif kind == "extra":
        feeds[r.choice(["extra", "", "x ", "Y"])] = arr
    elif kind == "dtype":
        choices = [d for d in (np.float64, np.float16, np.int32, np.int64, bool, np.complex64,
                               object) if np.dtype(d) != arr.dtype]
        feeds[name] = arr.astype(r.choice(choices))
    elif kind == "rank":
        feeds[name] = arr.reshape(arr.shape + (1,)) if r.random() < 0.5 else arr.reshape(-1)
    elif kind == "dims":
        shape = list(arr.shape)
        i = r.randrange(len(shape))
        shape[i] = r.choice([0, shape[i] + 1, shape[i] + 7])
        feeds[name] = np.zeros(shape, arr.dtype)
    elif kind == "not_array":
        feeds[name] = r.choice([arr.tolist(), None, "text", 3.0, {"a": 1}, b"bytes"])
    elif kind == "not_dict":
        return r.choice([[arr], arr, None, "x", 5, [(name, arr)]])
    return feeds


FEED_KINDS = ("missing", "extra", "dtype", "rank", "dims", "not_array", "not_dict")


def check_feeds(engine: Engine, kind: str, seed: int) -> str:
    """Execute with bad feeds: InputError is the only acceptable outcome (or success).

    Raises:
        Bug: Success where the feeds are certainly wrong, or any non-InputError.
    """
    feeds = bad_feeds(engine.inputs, kind, seed)
    try:
        with engine.create_execution_context() as ctx:
            ctx.execute(feeds)
    except InputError as exc:
        return f"error:{type(exc).__name__}"
    except Exception as exc:  # noqa: BLE001 - the invariant under test
        raise Bug(f"feeds {kind}/{seed}: {type(exc).__name__} instead of InputError: {exc}\n"
                  f"{traceback.format_exc()}") from exc
    if kind != "dims":  # a symbolic dim may legitimately take another size
        raise Bug(f"feeds {kind}/{seed}: bad feeds were accepted")
    return "ok"

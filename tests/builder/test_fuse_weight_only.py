"""fuse_weight_only: MatMul/Gemm on dequantized int8 weights -> dist_rt::WeightOnlyMatMul.

The pass fires only for CUDA builds; these CPU tests switch it on by patching
``fuse_weight_only.on_cuda`` (the fused layers then run their NumPy reference), or call it
with a CUDA ``BuildState``. References: onnxruntime on the same QDQ model, with graph
optimizations off so it computes the DQ + MatMul in float like the model says.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _builder_nets import ort_quantized_mlp
from onnx import TensorProto, helper, numpy_helper

import dist_rt
from dist_rt import Builder, BuilderConfig
from dist_rt.builder.passes import BuildState, fuse_weight_only
from dist_rt.builder.verify import verify
from dist_rt.errors import BuildError
from dist_rt.models.llama import LlamaConfig, make_llama, sample_inputs
from dist_rt.models.quantize import quantize_matmul_weights
from dist_rt.weights import Weights

WOQ = "WeightOnlyMatMul"


@pytest.fixture
def fuse_on_cpu(monkeypatch):
    """Make the pass treat CPU builds as CUDA builds."""
    monkeypatch.setattr(fuse_weight_only, "on_cuda", lambda state: True)


def _ort(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"]).run(None, feeds)


def _run(engine, feeds: dict) -> list[np.ndarray]:
    with engine.create_execution_context() as ctx:
        return list(ctx.execute(feeds).values())


def _ops(net) -> Counter:
    return Counter(lay.op_type for lay in net.layers)


def _quantized(rng, k: int, n: int, name: str, axis: int, dtype=np.int8, zp: bool = True):
    """Initializers ``name_q`` (k, n), ``name_s`` and ``name_zp`` (per ``axis``)."""
    info = np.iinfo(dtype)
    q = rng.integers(info.min, info.max + 1, (k, n)).astype(dtype)
    size = (k, n)[axis]
    scale = (rng.random(size) * 0.004 + 0.001).astype(np.float32)
    inits = [numpy_helper.from_array(q, f"{name}_q"), numpy_helper.from_array(scale, f"{name}_s")]
    ins = [f"{name}_q", f"{name}_s"]
    if zp:
        value = (rng.integers(-3, 4, size) + (128 if dtype == np.uint8 else 0)).astype(dtype)
        inits.append(numpy_helper.from_array(value, f"{name}_zp"))
        ins.append(f"{name}_zp")
    node = helper.make_node("DequantizeLinear", ins, [name], axis=axis, name=f"{name}_dq")
    return inits, node


def _handmade(rng) -> onnx.ModelProto:
    """The three exporter forms, weights over the importer's 64K-element fold limit::

        MatMul(x, DQ(W1 int8 (384, 448), axis=1)) + b1 -> Relu
        -> Gemm(h, DQ(W2 int8 (320, 448), axis=0), b2, transB=1, alpha=0.5) -> Relu
        -> MatMul(h2, Transpose(DQ(W3 uint8 (288, 320), axis=0)))
    """
    i1, n1 = _quantized(rng, 384, 448, "w1", 1, zp=False)
    i2, n2 = _quantized(rng, 320, 448, "w2", 0)
    i3, n3 = _quantized(rng, 288, 320, "w3", 0, np.uint8)
    inits = i1 + i2 + i3 + [
        numpy_helper.from_array(rng.standard_normal(448).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal(320).astype(np.float32), "b2")]
    nodes = [n1, n2, n3,
             helper.make_node("MatMul", ["x", "w1"], ["h0"], name="mm1"),
             helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]),
             helper.make_node("Gemm", ["h2", "w2", "b2"], ["h3"], name="gemm2", transB=1,
                              alpha=0.5),
             helper.make_node("Relu", ["h3"], ["h4"]),
             helper.make_node("Transpose", ["w3"], ["w3t"], perm=[1, 0]),
             helper.make_node("MatMul", ["h4", "w3t"], ["y"], name="mm3")]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 384])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 288])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


class TestPattern:
    def test_handmade_forms(self, fuse_on_cpu):
        rng = np.random.default_rng(0)
        model = _handmade(rng)
        x = {"x": rng.standard_normal((3, 384)).astype(np.float32)}
        (want,) = _ort(model, x)
        net = dist_rt.parse_onnx(model)
        assert _ops(net)["DequantizeLinear"] == 3  # large weights survive the import fold
        notes = []
        for level in (0, 2):
            engine = Builder(BuilderConfig(optimization_level=level, verify=True),
                             progress=notes.append).build(net)
            ops = _ops(engine.network)
            assert (ops[WOQ], ops["DequantizeLinear"]) == ((3, 0) if level else (0, 3))
            np.testing.assert_allclose(_run(engine, x)[0], want, rtol=1e-4, atol=1e-4)
        assert any("3 MatMul/Gemm on int8 weights fused (2 weights transposed)" in n
                   for n in notes)
        fused = {lay.name: lay for lay in engine.network.layers if lay.op_type == WOQ}
        w3 = next(lay for lay in fused.values() if lay.inputs[1].dtype == np.uint8)
        assert w3.inputs[1].shape == (320, 288) and len(w3.inputs) == 4  # transposed, zp kept
        w1 = next(lay for lay in fused.values() if lay.inputs[1].name == "w1_q")
        assert len(w1.inputs) == 3  # no zero point given
        with pytest.raises(BuildError, match="w2_q.*rebuild"):  # transposed at build time
            engine.refit({"w2_q": np.zeros((320, 448), np.int8)})
        engine.refit({"w1_q": np.zeros((384, 448), np.int8)})  # used as it is: refits

    def test_quantize_static_model(self, tmp_path, fuse_on_cpu):
        rng = np.random.default_rng(1)
        # onnxruntime.quantization's QDQ form (per channel, int8 weights) of MatMul + Gemm
        quantization = pytest.importorskip("onnxruntime.quantization")
        model, _ = ort_quantized_mlp(tmp_path, rng, 384, 448, 320, gemm_last=True,
                                     per_channel=True,
                                     weight_type=quantization.QuantType.QInt8)
        dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
        axes = {n.input[0]: helper.get_attribute_value(n.attribute[0]) for n in dq if n.attribute}
        assert axes == {"w1_quantized": 1, "w2_quantized": 0}  # the forms the pass handles
        x = {"x": rng.standard_normal((4, 384)).astype(np.float32)}
        (want,) = _ort(model, x)
        net = dist_rt.parse_onnx(model)
        for level in (0, 2):
            engine = Builder(BuilderConfig(optimization_level=level, verify=True)).build(net)
            assert _ops(engine.network)[WOQ] == (2 if level else 0)
            np.testing.assert_allclose(_run(engine, x)[0], want, rtol=1e-4, atol=1e-3)
        fused = [lay for lay in engine.network.layers if lay.op_type == WOQ]
        assert all(len(lay.inputs) == 3 for lay in fused)  # all-zero zero points dropped

    def test_not_on_cpu(self):
        net = dist_rt.parse_onnx(_handmade(np.random.default_rng(2)))
        engine = Builder(BuilderConfig(verify=True)).build(net)
        assert engine.build_notes["fuse_weight_only"].startswith("off")
        assert _ops(engine.network)[WOQ] == 0

    def test_fires_only_where_it_should(self):
        """Seven near misses, one match: only the match is rewritten."""
        rng = np.random.default_rng(3)
        inits, nodes = [], []

        def dq(name, k, n, axis, dtype=np.int8, **attrs):
            i, node = _quantized(rng, k, n, name, axis, dtype)
            node.attribute.extend(helper.make_attribute(a, v) for a, v in attrs.items())
            inits.extend(i)
            nodes.append(node)
            return name

        mm = lambda a, b, y, **kw: nodes.append(  # noqa: E731
            helper.make_node(kw.pop("op", "MatMul"), [a, *b], [y], name=y, **kw))
        mm("x", [dq("ok", 32, 8, 1)], "y_ok")                                # the match
        mm("x", [dq("per_k", 32, 8, 0)], "y_per_k")                          # scale along K
        dq("blocked", 32, 8, 0, block_size=16)                               # blocked scale
        inits[-2] = numpy_helper.from_array(np.full((2, 8), 0.01, np.float32), "blocked_s")
        inits[-1] = numpy_helper.from_array(np.zeros((2, 8), np.int8), "blocked_zp")
        mm("x", ["blocked"], "y_blocked")
        mm("x", [dq("wide", 32, 8, 1, np.int16)], "y_wide")                   # int16 weight
        mm("xt", [dq("trans_a", 32, 8, 1)], "y_trans_a", op="Gemm", transA=1)
        inits.append(numpy_helper.from_array(np.ones(8, np.float32), "c"))
        mm("x", [dq("beta", 32, 8, 1), "c"], "y_beta", op="Gemm", beta=2.0)
        # DQ of an activation (Q/DQ of x's transpose): not a constant weight.
        inits += [numpy_helper.from_array(np.float32(0.1), "s"),
                  numpy_helper.from_array(np.int8(0), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["xt", "s", "z"], ["xq"]),
                  helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"])]
        mm("xt2", ["xd"], "y_act")
        outs = ["y_ok", "y_per_k", "y_blocked", "y_wide", "y_trans_a", "y_beta", "y_act"]
        graph = helper.make_graph(
            nodes, "misses",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 32]),
             helper.make_tensor_value_info("xt", TensorProto.FLOAT, [32, 2]),
             helper.make_tensor_value_info("xt2", TensorProto.FLOAT, [2, 32])],
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, [2, 2 if y == "y_act" else 8])
             for y in outs], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)],
                                  ir_version=10)
        net = dist_rt.parse_onnx(model, fold_constants=False)
        before = _ops(net)
        note = fuse_weight_only.run(net, BuildState(BuilderConfig(device="cuda")))
        verify(net, "fuse_weight_only")
        assert note.startswith("1 MatMul/Gemm")
        fused = [lay for lay in net.layers if lay.op_type == WOQ]
        assert [lay.outputs[0].name for lay in fused] == ["y_ok"]
        assert _ops(net)["DequantizeLinear"] == before["DequantizeLinear"] - 1


class TestMerge:
    @staticmethod
    def _net(rng, k_dtype=np.int8):
        """x -> q (per channel), k (per channel, zero point), v (per tensor) -> Concat."""
        inits, nodes = [], []
        for name, n, dtype in [("q", 300, np.int8), ("k", 260, k_dtype), ("v", 280, np.int8)]:
            i, node = _quantized(rng, 256, n, name, 1, dtype, zp=name != "q")
            if name == "v":  # per tensor: one scale, one zero point
                i[1:] = [numpy_helper.from_array(np.float32(0.003), "v_s"),
                         numpy_helper.from_array(np.int8(2), "v_zp")]
            inits += i
            nodes += [node, helper.make_node("MatMul", ["x", name], [f"y_{name}"])]
        nodes.append(helper.make_node("Concat", ["y_q", "y_k", "y_v"], ["y"], axis=-1))
        graph = helper.make_graph(
            nodes, "qkv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 256])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 840])], inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                 ir_version=8)

    @pytest.mark.parametrize("k_dtype, woq, merged", [(np.int8, 1, "3 WeightOnlyMatMuls merged "
                                                                     "into 1"),
                                                      (np.uint8, 2, "2 WeightOnlyMatMuls merged "
                                                                    "into 1")])
    def test_merged_matches_onnxruntime(self, fuse_on_cpu, k_dtype, woq, merged):
        rng = np.random.default_rng(4)
        model = self._net(rng, k_dtype)
        x = {"x": rng.standard_normal((1, 3, 256)).astype(np.float32)}
        notes = []
        engine = Builder(BuilderConfig(verify=True), progress=notes.append).build(
            dist_rt.parse_onnx(model))
        ops = _ops(engine.network)
        assert ops[WOQ] == woq and ops["Split"] == 1  # merged by weight dtype
        assert any(merged in n for n in notes)
        big = max((lay for lay in engine.network.layers if lay.op_type == WOQ),
                  key=lambda lay: lay.inputs[1].shape[1])
        assert big.inputs[1].shape == (256, 840 if woq == 1 else 580)
        assert big.inputs[2].shape == big.inputs[3].shape == (big.inputs[1].shape[1],)
        np.testing.assert_allclose(_run(engine, x)[0], _ort(model, x)[0], rtol=1e-4,
                                   atol=1e-4)


@pytest.fixture(scope="module")
def quantized():
    cfg = LlamaConfig(hidden=256, layers=2, heads=4, kv_heads=2, mlp=512, vocab=1000)
    return cfg, quantize_matmul_weights(make_llama(cfg))


class TestLlama:

    @pytest.mark.parametrize("precision, tol", [("fp32", 1e-4), ("fp16", 2e-2)])
    def test_logits_match_onnxruntime(self, quantized, fuse_on_cpu, precision, tol):
        cfg, model = quantized
        feeds = sample_inputs(cfg, 2, 5)
        (want,) = _ort(model, feeds)
        # Without the import fold, the small (<= 64K element) weights stay quantized too.
        net = dist_rt.parse_onnx(model, fold_constants=False)
        engine = Builder(BuilderConfig(precision=precision, verify=True)).build(net)
        ops = _ops(engine.network)
        # per layer: q/k/v merged, o, gate/up merged, down; plus lm_head
        assert ops[WOQ] == 4 * cfg.layers + 1 and ops["DequantizeLinear"] == 0
        for lay in engine.network.layers:
            if lay.op_type == WOQ:
                assert lay.inputs[1].dtype == np.int8 and lay.inputs[2].dtype == np.float32
        got = _run(engine, feeds)[0]
        assert np.max(np.abs(got - want)) <= tol * (1 + np.max(np.abs(want)))

    def test_refit_merged_weight_and_scale(self, quantized, fuse_on_cpu):
        cfg, model = quantized
        net = dist_rt.parse_onnx(model, fold_constants=False)
        engine = Builder(BuilderConfig()).build(net)
        prefix = "model.layers.0.self_attn.k_proj.weight"  # merged into q/k/v
        new = {f"{prefix}_quantized": -net.tensors[f"{prefix}_quantized"].weights.numpy(),
               f"{prefix}_scale": 2 * net.tensors[f"{prefix}_scale"].weights.numpy()}
        engine.refit(new)
        for name, value in new.items():
            net.tensors[name].weights = Weights(value)
        rebuilt = Builder(BuilderConfig()).build(net)
        feeds = sample_inputs(cfg, 1, 4)
        np.testing.assert_allclose(_run(engine, feeds)[0], _run(rebuilt, feeds)[0], atol=1e-5)

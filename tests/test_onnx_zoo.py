"""ONNX import of the graph patterns of torchvision's CNNs (constant-folded
shape arithmetic, channel shuffles and splits, squeeze-and-excitation gates,
SiLU, GELU's erf form, ConvNeXt's channels-last blocks, ceil-mode pools,
1-d convolutions, ...), each graph built with onnx.helper and checked
against onnx's reference evaluator, then explained."""
import math

import numpy as np
import pytest

import lrpnb

onnx = pytest.importorskip("onnx", reason="needs the onnx package (pip install \".[test]\")")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

RNG = np.random.default_rng(26)


def normal(*shape, scale=0.5):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def build(tmp_path, nodes, input_shape, inits, opset=17, batch="N"):
    """Save a model of ``nodes`` from input x (batch, *input_shape) to output y; (path, model)."""
    tensors = [numpy_helper.from_array(np.asarray(value), name) for name, value in inits.items()]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         [batch, *input_shape])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return str(path), model


def to_lrpnb(X):
    """An ONNX batch in lrpnb's layout: NCHW -> NHWC, (N, C, L) -> (N, 1, L, C)."""
    if X.ndim == 4:
        return np.ascontiguousarray(X.transpose(0, 2, 3, 1))
    if X.ndim == 3:
        return np.ascontiguousarray(X.transpose(0, 2, 1)[:, None])
    return X


def check(tmp_path, nodes, input_shape, inits, conserved=True, opset=17, batch="N", samples=2):
    """Load the graph, compare lrpnb's forward with the reference evaluator's (float32 tolerance), explain it
    (relevance of the input's shape; its sum the explained score where the rule conserves); the network."""
    path, model = build(tmp_path, nodes, input_shape, inits, opset, batch)
    net = lrpnb.load(path)
    X = normal(samples, *input_shape, scale=1.0)
    expected = ReferenceEvaluator(model).run(None, {"x": X})[0]
    Y = net.forward(to_lrpnb(X))
    np.testing.assert_allclose(Y, to_lrpnb(expected), rtol=1e-4, atol=1e-5)
    if expected.ndim == 2:
        R, scores = net.explain(to_lrpnb(X).astype(np.float64), rule="epsilon", param=1e-9, return_scores=True)
        assert R.shape == to_lrpnb(X).shape and np.isfinite(R).all()
        if conserved:
            explained = scores[np.arange(samples), scores.argmax(axis=1)]
            # the joins' Norm rule (epsilon 1e-6) absorbs a little
            np.testing.assert_allclose(R.reshape(samples, -1).sum(axis=1), explained, rtol=1e-4, atol=1e-6)
        G = net.explain(to_lrpnb(X).astype(np.float64), rule="gradient")
        assert G.shape == R.shape and np.isfinite(G).all()
    return net


def layer_types(net):
    return [type(layer).__name__ for layer in net.layers]


def test_view_of_the_batch_size_folds_into_a_flatten(tmp_path):
    # x.view(x.size(0), -1) as torch.onnx exports it, then a dense layer
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Shape", ["r"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus_one"], ["size"], axis=0),
             helper.make_node("Reshape", ["r", "size"], ["f"]),
             helper.make_node("Gemm", ["f", "w"], ["y"], transB=1)]
    inits = {"zero": np.array(0), "axes": np.array([0]), "minus_one": np.array([-1]), "w": normal(3, 2 * 3 * 4)}
    net = check(tmp_path, nodes, (2, 3, 4), inits)
    assert layer_types(net) == ["Rect", "Flatten", "Linear"]


def test_folded_shape_arithmetic(tmp_path):
    # sizes computed with Cast, Range, Equal, Where, ConstantOfShape, Expand, Slice, Mul, Div, Sqrt, Pow
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Slice", ["shape", "one", "four"], ["chw"]),
             helper.make_node("Cast", ["chw"], ["chw_f"], to=TensorProto.FLOAT),
             helper.make_node("Pow", ["chw_f", "two_f"], ["sq"]),
             helper.make_node("Sqrt", ["sq"], ["root"]),
             helper.make_node("Div", ["root", "two_f"], ["half"]),
             helper.make_node("Mul", ["half", "two_f"], ["whole"]),
             helper.make_node("Cast", ["whole"], ["sizes"], to=TensorProto.INT64),
             helper.make_node("Range", ["zero", "three", "one1"], ["positions"]),
             helper.make_node("Equal", ["positions", "zero"], ["is_first"]),
             helper.make_node("ConstantOfShape", ["one"], ["minus"], value=helper.make_tensor(
                 "v", TensorProto.INT64, [1], [-1])),
             helper.make_node("Expand", ["minus", "three"], ["minus3"]),
             helper.make_node("Where", ["is_first", "minus3", "sizes"], ["target"]),
             helper.make_node("Concat", ["zero", "target"], ["full"], axis=0),
             helper.make_node("Reshape", ["x", "full"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["y"])]
    inits = {"one": np.array([1]), "four": np.array([4]), "two_f": np.array(2.0, np.float32),
             "zero": np.array([0]), "three": np.array([3]), "one1": np.array([1]), "w": normal(24, 3)}
    net = check(tmp_path, nodes, (2, 3, 4), inits)
    assert layer_types(net) == ["Flatten", "Linear"]


def test_constants_fold_through_matmul_shape_and_activations(tmp_path):
    # Swin V2's tables: an MLP of constants; a Shape of a constant; a zero Pad is nothing
    nodes = [helper.make_node("MatMul", ["table", "m"], ["t1"]),
             helper.make_node("Relu", ["t1"], ["t2"]),
             helper.make_node("Sigmoid", ["t2"], ["t3"]),
             helper.make_node("Shape", ["t3"], ["ts"]),
             helper.make_node("Pad", ["x", "nothing"], ["p"]),
             helper.make_node("Reshape", ["p", "ts"], ["f"]),
             helper.make_node("Mul", ["f", "t3"], ["scaled"]),
             helper.make_node("MatMul", ["scaled", "w"], ["y"])]
    inits = {"table": normal(1, 4), "m": normal(4, 24), "nothing": np.zeros(8, np.int64), "w": normal(24, 2)}
    net = check(tmp_path, nodes, (2, 3, 4), inits, batch=1, samples=1)
    assert layer_types(net) == ["Flatten", "Scale", "Linear"]
    nodes = [helper.make_node("Conv", ["w", "w"], ["y"], name="bad")]
    with pytest.raises(ValueError, match=r"node 'bad' \(Conv\): reads the constant 'w' where lrpnb reads "):
        lrpnb.load(build(tmp_path, nodes, (2, 3, 4), {"w": normal(2, 2, 1, 1)})[0])


def test_folding_refuses_a_bomb(tmp_path):
    nodes = [helper.make_node("ConstantOfShape", ["huge"], ["big"], name="bomb"),
             helper.make_node("Add", ["x", "big"], ["y"])]
    path, _ = build(tmp_path, nodes, (2,), {"huge": np.array([1 << 20, 1 << 20], np.int64)})
    with pytest.raises(ValueError, match=r"m.onnx: node 'bomb' \(ConstantOfShape\): .*"):
        lrpnb.load(path)
    for op, inputs in (("Expand", ["one", "huge"]), ("Range", ["zero", "many", "one"])):
        nodes = [helper.make_node(op, inputs, ["big"], name="bomb"), helper.make_node("Add", ["x", "big"], ["y"])]
        inits = {"one": np.array(1, np.int64), "zero": np.array(0, np.int64), "many": np.array(1 << 40, np.int64),
                 "huge": np.array([1 << 20, 1 << 20], np.int64)}
        with pytest.raises(ValueError, match=rf"m.onnx: node 'bomb' \({op}\): the folded output .* would take"):
            lrpnb.load(build(tmp_path, nodes, (2,), inits)[0])
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Mul", ["s", "s"], ["s2"], name="batchy"),
             helper.make_node("Reshape", ["x", "s2"], ["y"])]
    with pytest.raises(ValueError, match=r"node 'batchy' \(Mul\): computes with the batch size"):
        lrpnb.load(build(tmp_path, nodes, (2,), {})[0])


def test_reduce_mean_and_squeeze_are_a_global_average_pool(tmp_path):
    # mnasnet: x.mean([2, 3]); then a dense layer
    for keepdims in (0, 1):
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                 helper.make_node("ReduceMean", ["c"], ["m"], axes=[2, 3], keepdims=keepdims),
                 helper.make_node("Flatten", ["m"], ["f"]),
                 helper.make_node("Gemm", ["f", "v"], ["y"])]
        net = check(tmp_path, nodes, (3, 5, 5), {"w": normal(4, 3, 3, 3), "v": normal(4, 2)})
        assert "GlobalAveragePool" in layer_types(net) and "Linear" in layer_types(net)


def test_pad_folds_into_the_convolution_and_average_pool(tmp_path):
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant"),
             helper.make_node("Conv", ["p", "w"], ["c"], strides=[2, 2]),
             helper.make_node("Pad", ["c", "pads2"], ["p2"]),
             helper.make_node("AveragePool", ["p2"], ["a"], kernel_shape=[2, 2]),
             helper.make_node("Flatten", ["a"], ["f"]),
             helper.make_node("Gemm", ["f", "v"], ["y"])]
    inits = {"pads": np.array([0, 0, 0, 1, 0, 0, 2, 1]), "pads2": np.array([0, 0, 1, 1, 0, 0, 0, 0]),
             "w": normal(4, 3, 3, 3), "v": normal(4 * 3 * 3, 2)}
    net = check(tmp_path, nodes, (3, 6, 6), inits)
    conv = net.layers[0]
    assert layer_types(net)[:2] == ["Convolution", "AveragePool"] and conv.padding == (0, 2, 1, 1)
    nodes[3] = helper.make_node("MaxPool", ["p2"], ["a"], kernel_shape=[2, 2], name="max")
    with pytest.raises(ValueError, match=r"node 'max' \(MaxPool\): a max pool of a zero-padded tensor"):
        lrpnb.load(build(tmp_path, nodes, (3, 6, 6), inits)[0])


def test_conv1d_and_pool1d_are_their_2d_forms(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 2], strides=[2], dilations=[1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["m"], kernel_shape=[2], strides=[2], ceil_mode=1),
             helper.make_node("AveragePool", ["m"], ["a"], kernel_shape=[2], strides=[1]),
             helper.make_node("Flatten", ["a"], ["f"]),
             helper.make_node("Gemm", ["f", "v"], ["y"])]
    net = check(tmp_path, nodes, (3, 11), {"w": normal(4, 3, 3), "v": normal(4 * 2, 2)}, conserved=False)
    assert net.input_shape == (1, 11, 3) and net.layers[0].padding == (0, 0, 1, 2)


def test_ceil_mode_pools(tmp_path):
    # googlenet and squeezenet: MaxPool(3, 2, ceil_mode=True)
    nodes = [helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
             helper.make_node("AveragePool", ["m"], ["a"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1,
                              pads=[1, 0, 1, 0], count_include_pad=1),
             helper.make_node("Flatten", ["a"], ["f"]),
             helper.make_node("Gemm", ["f", "v"], ["y"])]
    net = check(tmp_path, nodes, (2, 8, 8), {"v": normal(2 * 3 * 2, 3)}, conserved=False)
    assert all(layer.ceil_mode for layer in net.layers[:2])


def test_channel_shuffle_and_split(tmp_path):
    # shufflenet_v2: chunk into two, convolve one half, concatenate, shuffle (Reshape, Transpose, Reshape)
    C, H, W = 6, 4, 4
    nodes = [helper.make_node("Split", ["x", "halves"], ["x1", "x2"], axis=1),
             helper.make_node("Conv", ["x2", "w"], ["c"]),
             helper.make_node("Concat", ["x1", "c"], ["cat"], axis=1),
             helper.make_node("Reshape", ["cat", "grouped"], ["g"]),
             helper.make_node("Transpose", ["g"], ["t"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t", "back"], ["s"]),
             helper.make_node("Slice", ["s", "start", "end", "axis1"], ["part"]),
             helper.make_node("Conv", ["part", "w2"], ["c2"]),
             helper.make_node("Relu", ["c2"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["y"])]
    inits = {"halves": np.array([3, 3]), "w": normal(3, 3, 1, 1), "grouped": np.array([0, 2, 3, H, W]),
             "back": np.array([-1, C, H, W]), "start": np.array([1]), "end": np.array([5]), "axis1": np.array([1]),
             "w2": normal(3, 4, 1, 1)}
    net = check(tmp_path, nodes, (C, H, W), inits)
    gathers = [layer for layer in net.layers if type(layer).__name__ == "GatherChannels"]
    assert gathers and all(np.unique(g.index).size == g.index.size for g in gathers)
    # the gradient through the gathers against central differences of the score
    X = to_lrpnb(RNG.normal(size=(1, C, H, W)))
    G = net.explain(X, target=0, rule="gradient")
    step, picked = 1e-6, RNG.choice(X.size, 24, replace=False)
    numeric = []
    for k in picked:
        dX = np.zeros(X.size)
        dX[k] = step
        dX = dX.reshape(X.shape)
        numeric.append((net.forward(X + dX)[0, 0] - net.forward(X - dX)[0, 0]) / (2 * step))
    np.testing.assert_allclose(G.ravel()[picked], numeric, rtol=1e-4, atol=1e-8)


def test_gather_channels_layer_against_numpy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 3, 3, 5))
    layer = lrpnb.layers.GatherChannels([4, 0, 2])
    Y = layer.forward(X)
    np.testing.assert_array_equal(Y, X[..., [4, 0, 2]])
    R = rng.normal(size=Y.shape)
    for rule in ("epsilon", "alphabeta", "gradient"):
        Rx = layer.relevance(X, Y, R, rule, 0.5 if rule == "alphabeta" else 0.01)
        expected = np.zeros_like(X)
        expected[..., [4, 0, 2]] = R
        np.testing.assert_array_equal(Rx, expected)
    with pytest.raises(ValueError, match="GatherChannels: index must be unique"):
        lrpnb.layers.GatherChannels([1, 1])


def test_squeeze_and_excitation_gate_and_silu(tmp_path):
    # efficientnet: SiLU as Sigmoid and Mul; the SE block x * Sigmoid(conv(relu(conv(mean(x)))))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c"], ["sig"]),
             helper.make_node("Mul", ["c", "sig"], ["silu"]),
             helper.make_node("GlobalAveragePool", ["silu"], ["squeeze"]),
             helper.make_node("Conv", ["squeeze", "w1"], ["s1"]),
             helper.make_node("Relu", ["s1"], ["s1r"]),
             helper.make_node("Conv", ["s1r", "w2"], ["s2"]),
             helper.make_node("HardSigmoid", ["s2"], ["gate"], alpha=1 / 6, beta=0.5),
             helper.make_node("Mul", ["silu", "gate"], ["se"]),
             helper.make_node("GlobalAveragePool", ["se"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["y"])]
    inits = {"w": normal(4, 3, 3, 3), "w1": normal(2, 4, 1, 1), "w2": normal(4, 2, 1, 1)}
    net = check(tmp_path, nodes, (3, 5, 5), inits)
    assert "SiLU" in layer_types(net) and "Mul" in layer_types(net) and "Sigmoid" not in layer_types(net)


def test_activations_of_mobilenets(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], group=3),
             helper.make_node("Clip", ["c", "zero", "six"], ["relu6"]),
             helper.make_node("HardSwish", ["relu6"], ["hs"]),
             helper.make_node("LeakyRelu", ["hs"], ["lr"], alpha=0.1),
             helper.make_node("Gelu", ["lr"], ["g"]),
             helper.make_node("GlobalAveragePool", ["g"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["f"]),
             helper.make_node("Gemm", ["f", "v", "b"], ["y"], transB=1)]
    inits = {"w": normal(6, 1, 3, 3, scale=2.0), "zero": np.array(0, np.float32), "six": np.array(6, np.float32),
             "v": normal(4, 6), "b": np.zeros(4, np.float32)}
    net = check(tmp_path, nodes, (3, 5, 5), inits, opset=20)
    assert layer_types(net)[1:5] == ["Clip", "HardSwish", "LeakyReLU", "GELU"]


def convnext_block(C):
    """ConvNeXt's CNBlock: depthwise conv, permute to channels last, LayerNorm, Linear, GELU (erf form), Linear,
    permute back, layer scale, residual sum."""
    nodes = [helper.make_node("Conv", ["x", "dw", "dwb"], ["d"], group=C, pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["d"], ["last"], perm=[0, 2, 3, 1]),
             helper.make_node("LayerNormalization", ["last", "gamma", "beta"], ["ln"], axis=-1, epsilon=1e-6),
             helper.make_node("MatMul", ["ln", "w1"], ["m1"]),
             helper.make_node("Add", ["b1", "m1"], ["h"]),
             helper.make_node("Div", ["h", "sqrt2"], ["hs"]),
             helper.make_node("Erf", ["hs"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["e1"]),
             helper.make_node("Mul", ["h", "e1"], ["he"]),
             helper.make_node("Mul", ["he", "half"], ["gelu"]),
             helper.make_node("MatMul", ["gelu", "w2"], ["m2"]),
             helper.make_node("Add", ["m2", "b2"], ["o"]),
             helper.make_node("Transpose", ["o"], ["first"], perm=[0, 3, 1, 2]),
             helper.make_node("Mul", ["scale", "first"], ["scaled"]),
             helper.make_node("Add", ["scaled", "x"], ["res"])]
    inits = {"dw": normal(C, 1, 3, 3), "dwb": normal(C), "gamma": normal(C) + 1, "beta": normal(C),
             "w1": normal(C, 4 * C), "b1": normal(4 * C), "sqrt2": np.array(math.sqrt(2), np.float32),
             "one": np.array(1.0, np.float32), "half": np.array(0.5, np.float32), "w2": normal(4 * C, C),
             "b2": normal(C), "scale": normal(C, 1, 1)}
    return nodes, inits


def test_convnext_block(tmp_path):
    C = 4
    nodes, inits = convnext_block(C)
    # the classifier: LayerNorm2d (permute, LayerNorm, permute back), flatten, Linear
    nodes += [helper.make_node("GlobalAveragePool", ["res"], ["gap"]),
              helper.make_node("Transpose", ["gap"], ["gl"], perm=[0, 2, 3, 1]),
              helper.make_node("LayerNormalization", ["gl", "gamma", "beta"], ["gn"], axis=-1, epsilon=1e-6),
              helper.make_node("Transpose", ["gn"], ["gf"], perm=[0, 3, 1, 2]),
              helper.make_node("Flatten", ["gf"], ["f"]),
              helper.make_node("Gemm", ["f", "v", "vb"], ["y"], transB=1)]
    inits |= {"v": normal(3, C), "vb": normal(3)}
    net = check(tmp_path, nodes, (C, 5, 5), inits, conserved=False)
    types = layer_types(net)
    assert types.count("LayerNorm") == 2 and "GELU" in types and "Scale" in types
    assert "GatherChannels" not in types and types.count("Convolution") == 3  # the MatMuls are 1x1 convolutions


def test_conv_transpose(tmp_path):
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["t"], strides=[2, 2], pads=[1, 0, 1, 0],
                              output_padding=[1, 1]),
             helper.make_node("Relu", ["t"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "v"], ["y"])]
    alone = [helper.make_node("Identity", ["t"], ["y"])]
    path, model = build(tmp_path, nodes[:1] + alone, (3, 4, 4), {"w": normal(3, 2, 3, 3), "b": normal(2)})
    X = normal(2, 3, 4, 4)
    out = ReferenceEvaluator(model).run(None, {"x": X})[0]
    inits = {"w": normal(3, 2, 3, 3), "b": np.zeros(2, np.float32), "v": normal(int(np.prod(out.shape[1:])), 2)}
    net = check(tmp_path, nodes, (3, 4, 4), inits)
    assert layer_types(net)[0] == "ConvTranspose"


def test_conv_transpose_1d(tmp_path):
    """A ConvTranspose over (N, C, L): its output padding adds to the length only."""
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["t"], strides=[2], pads=[1, 0],
                              output_padding=[1]),
             helper.make_node("Relu", ["t"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "v"], ["y"])]
    # length (5 - 1) * 2 - 1 - 0 + (3 - 1) + 1 + 1 = 11
    net = check(tmp_path, nodes, (3, 5), {"w": normal(3, 2, 3), "b": np.zeros(2, np.float32), "v": normal(22, 2)})
    assert layer_types(net)[0] == "ConvTranspose"


def test_a_fixed_batch_size_folded_by_torch(tmp_path):
    # torch folds the shapes of a static input: Reshape(x, (1, -1)) for x.view(x.size(0), -1)
    nodes = [helper.make_node("Reshape", ["x", "size"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])]
    check(tmp_path, nodes, (2, 3, 3), {"size": np.array([1, -1]), "w": normal(18, 2)}, batch=1, samples=1)


def test_patterns_lrpnb_does_not_read_are_refused(tmp_path):
    cases = [([helper.make_node("Erf", ["x"], ["y"], name="bad")], "Erf is read only in GELU's erf form"),
             ([helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0, 2, 3], name="bad")], "keeps the batch axis"),
             ([helper.make_node("Mul", ["x", "x"], ["m"], name="bad"), helper.make_node("Relu", ["m"], ["y"])],
              "lrpnb reads a gate"),
             ([helper.make_node("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]),
               helper.make_node("Conv", ["t", "w"], ["y"], name="bad")], "expects an image"),
             ([helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect", name="bad")], "only zero padding"),
             ([helper.make_node("Sub", ["x", "mean"], ["y"], name="bad")], "give lrpnb explain --mean and --std")]
    for nodes, message in cases:
        path, _ = build(tmp_path, nodes, (2, 3, 4), {"w": normal(2, 2, 1, 1), "pads": np.zeros(8, np.int64),
                                                      "mean": normal(2, 1, 1)})
        with pytest.raises(ValueError, match=rf"m.onnx: node 'bad' \(\w+\): .*{message}"):
            lrpnb.load(path)


SIMULATED = """
import numpy as np
from lrpnb.backends import backend
from lrpnb.layers import GatherChannels
GPU = backend("cuda")
rng = np.random.default_rng(1)
X = rng.normal(size=(2, 3, 2, 5))
layer = GatherChannels([3, 1, 4])
Y = GPU.to_host(layer.forward(GPU.put(X), GPU))
R = rng.normal(size=Y.shape)
Rx = GPU.to_host(layer.relevance(GPU.put(X), GPU.put(Y), GPU.put(R), "epsilon", 0.1, GPU))
expected = np.zeros_like(X)
expected[..., [3, 1, 4]] = R
assert np.array_equal(Y, X[..., [3, 1, 4]]) and np.array_equal(Rx, expected)
"""


def test_gather_channels_gpu_twin_under_the_simulator():
    import os
    import subprocess
    import sys

    pytest.importorskip("numba_cuda", reason="needs numba-cuda (pip install \".[test]\")")
    result = subprocess.run([sys.executable, "-c", SIMULATED], capture_output=True, text=True,
                            env=dict(os.environ, NUMBA_ENABLE_CUDASIM="1"), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]


def test_gather_channels_kernel_compiles_to_ptx():
    pytest.importorskip("numba_cuda", reason="needs numba-cuda (pip install \".[test]\")")
    from numba import cuda, types

    from lrpnb.cuda.channels import SIGNATURES

    for kernel in SIGNATURES:
        for scalar in (types.float32, types.float64):
            array = types.Array(scalar, 1, "C")
            ptx, _ = cuda.compile_ptx(kernel.py_func, (array, types.Array(types.int64, 1, "C"), array), cc=(9, 0))
            assert ".entry" in ptx


def test_an_imported_shuffle_saves_in_the_lrpnb_format(tmp_path):
    C, H, W = 4, 3, 3
    nodes = [helper.make_node("Reshape", ["x", "grouped"], ["g"]),
             helper.make_node("Transpose", ["g"], ["t"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t", "back"], ["s"]),
             helper.make_node("Conv", ["s", "w"], ["c"]),
             helper.make_node("GlobalAveragePool", ["c"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["y"])]
    inits = {"grouped": np.array([0, 2, 2, H, W]), "back": np.array([0, C, H, W]), "w": normal(3, C, 1, 1)}
    net = check(tmp_path, nodes, (C, H, W), inits)
    assert layer_types(net)[0] == "GatherChannels" and net.layers[0].index.tolist() == [0, 2, 1, 3]
    lrpnb.save(net, tmp_path / "m.lrpnb")
    again = lrpnb.load(tmp_path / "m.lrpnb")
    X = to_lrpnb(normal(2, C, H, W))
    np.testing.assert_array_equal(again.forward(X), net.forward(X))

"""ONNX import: small graphs built with onnx.helper from numpy weights (no
torch), each operator and attribute checked against a numpy evaluation of
the ONNX semantics (NCHW), and malformed or unsupported graphs."""
import numpy as np
import pytest

import lrpnb
import naive

onnx = pytest.importorskip("onnx", reason="needs the onnx package (pip install \".[test]\")")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def make_model(path, nodes, input_shape, output_name, initializers, output_shape=None):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"] + list(input_shape))],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, output_shape)],
        [numpy_helper.from_array(np.asarray(value, dtype=np.float32), name) for name, value in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return str(path)


def nchw_conv(X, W, B, stride, pads, dilation, group):
    """ONNX Conv on NCHW through naive.py's NHWC reference."""
    top, left, bottom, right = pads
    Y = naive.conv_general_forward(X.transpose(0, 2, 3, 1), W.transpose(2, 3, 1, 0), B, stride,
                                   (top, bottom, left, right), dilation, group)
    return Y.transpose(0, 3, 1, 2)


def to_nhwc(X):
    return np.ascontiguousarray(X.transpose(0, 2, 3, 1))


def test_residual_block_with_batchnorm_concat_and_pools(tmp_path):
    rng = np.random.default_rng(0)
    init = {
        "w1": rng.normal(size=(4, 3, 3, 3)) / 3, "b1": rng.normal(size=4) / 10,
        "gamma": rng.random(4) + 0.5, "beta": rng.normal(size=4), "mean": rng.normal(size=4),
        "var": rng.random(4) + 0.5,
        "w2": rng.normal(size=(4, 2, 3, 3)) / 3,  # grouped: 2 groups of 2 input channels
        "gamma2": rng.random(4) + 0.5, "beta2": rng.normal(size=4), "mean2": rng.normal(size=4),
        "var2": rng.random(4) + 0.5,
        "w3": rng.normal(size=(2, 3, 1, 1)),
        "fc": rng.normal(size=(5, 6 * 3 * 3)) / 5, "fcb": rng.normal(size=5),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[1, 1], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["n1"], epsilon=1e-3),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[2, 2, 2, 2], dilations=[2, 2], group=2),
        helper.make_node("Relu", ["c2"], ["r2"]),
        # a BatchNorm that reads a tensor two nodes read stays a layer of its own
        helper.make_node("BatchNormalization", ["r1", "gamma2", "beta2", "mean2", "var2"], ["n2"]),
        helper.make_node("Add", ["r2", "n2"], ["sum"], name="join"),
        helper.make_node("Conv", ["x", "w3"], ["side"]),
        helper.make_node("Concat", ["sum", "side"], ["cat"], axis=1),
        helper.make_node("MaxPool", ["cat"], ["mp"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["mp"], ["ap"], kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1]),
        helper.make_node("Dropout", ["ap"], ["dp"]),
        helper.make_node("Flatten", ["dp"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["y"], transB=1),
    ]
    path = make_model(tmp_path / "m.onnx", nodes, (3, 6, 5), "y", init, ["N", 5])
    net = lrpnb.load(path)
    names = [node.name for node in net.nodes]
    assert "join" in names and not any(isinstance(layer, lrpnb.Identity) for layer in net.layers)
    assert sum(isinstance(layer, lrpnb.BatchNorm) for layer in net.layers) == 1  # one folded, one kept
    X = rng.normal(size=(2, 3, 6, 5))
    # ONNX's semantics in NCHW numpy
    f = lambda v: init[v]  # noqa: E731
    bn = lambda v, g, b, m, s, eps: ((v - f(m)[:, None, None]) * f(g)[:, None, None]  # noqa: E731
                                     / np.sqrt(f(s)[:, None, None] + eps) + f(b)[:, None, None])
    r1 = np.maximum(bn(nchw_conv(X, f("w1"), f("b1"), (1, 1), (1, 1, 1, 1), (1, 1), 1),
                       "gamma", "beta", "mean", "var", 1e-3), 0)
    r2 = np.maximum(nchw_conv(r1, f("w2"), np.zeros(4), (1, 1), (2, 2, 2, 2), (2, 2), 2), 0)
    total = r2 + bn(r1, "gamma2", "beta2", "mean2", "var2", 1e-5)
    cat = np.concatenate([total, nchw_conv(X, f("w3"), np.zeros(2), (1, 1), (0, 0, 0, 0), (1, 1), 1)], axis=1)
    mp = naive.maxpool_forward(naive.padded(to_nhwc(cat), (1, 1, 1, 1), -np.inf), (3, 3), (2, 2))
    ap = naive.avgpool_forward(mp, (2, 2), (1, 1), (0, 1, 0, 1), False).transpose(0, 3, 1, 2)
    expected = ap.reshape(2, -1) @ f("fc").T + f("fcb")
    scores = net.scores(to_nhwc(X).astype(np.float32))
    np.testing.assert_allclose(scores, expected, rtol=2e-4, atol=2e-4)
    R, kept = net.explain(to_nhwc(X).astype(np.float32), rule="epsilon", param=0.01, layers=["join"])
    assert R.shape == (2, 6, 5, 3) and kept["join"].shape == (2, 6, 5, 4) and np.isfinite(R).all()
    with pytest.raises(ValueError, match="toolbox's model formats hold chains"):
        lrpnb.save(net, tmp_path / "m.txt")


def test_matmul_with_a_bias_reshape_softmax_and_activations(tmp_path):
    rng = np.random.default_rng(1)
    init = {"w": rng.normal(size=(2 * 3 * 2, 4)), "b": rng.normal(size=(1, 4)), "shape": [0, -1]}
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"]),
        helper.make_node("Identity", ["s"], ["i"]),
        helper.make_node("Reshape", ["i", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["z"]),
        helper.make_node("Tanh", ["z"], ["t"]),
        helper.make_node("Softmax", ["t"], ["y"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(init["w"], np.float32), "w"),
         numpy_helper.from_array(np.asarray(init["b"], np.float32), "b"),
         numpy_helper.from_array(np.asarray(init["shape"], np.int64), "shape")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    net = lrpnb.load(tmp_path / "m.onnx")
    assert [type(layer).__name__ for layer in net.layers] == ["Sigmoid", "Flatten", "Linear", "Tanh", "SoftMax"]
    X = rng.normal(size=(3, 2, 3, 2))
    z = np.tanh((1 / (1 + np.exp(-X))).reshape(3, -1) @ init["w"] + init["b"])
    expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(net.forward(to_nhwc(X)), expected, rtol=1e-5)


def test_unsupported_and_malformed_graphs(tmp_path):
    w = {"w": np.ones((2, 1, 3, 3))}
    path = make_model(tmp_path / "lrn.onnx", [helper.make_node("LpNormalization", ["x"], ["y"], name="norm7")],
                      (1, 4, 4), "y", {})
    with pytest.raises(ValueError, match=r"node 'norm7' \(LpNormalization\): unsupported operator; lrpnb "
                                         r"imports Add, AveragePool, .*Conv"):
        lrpnb.load(path)
    path = make_model(tmp_path / "same.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER")],
                      (1, 4, 4), "y", w)
    with pytest.raises(ValueError, match="auto_pad SAME_UPPER/SAME_LOWER is not supported"):
        lrpnb.load(path)
    path = make_model(tmp_path / "ceil.onnx",
                      [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], ceil_mode=2)], (1, 4, 4), "y", {})
    with pytest.raises(ValueError, match="attribute ceil_mode must be 0 or 1, got 2"):  # 1: tests/test_onnx_zoo.py
        lrpnb.load(path)
    path = make_model(tmp_path / "dyn.onnx", [helper.make_node("Conv", ["x", "wx"], ["y"])], (1, 4, 4), "y", {})
    with pytest.raises(ValueError, match=r"the filters \('wx'\) must be a constant"):
        lrpnb.load(path)
    path = make_model(tmp_path / "missing.onnx", [helper.make_node("Relu", ["nowhere"], ["y"])], (1, 4, 4), "y", {})
    with pytest.raises(ValueError, match="reads 'nowhere', which is neither the model's input"):
        lrpnb.load(path)
    path = make_model(tmp_path / "reshaped.onnx", [helper.make_node("Flatten", ["x"], ["y"])], (2, 3, 3), "y", {})
    with pytest.raises(ValueError, match="the output 'y' is the input itself .*no layer computes it"):
        lrpnb.load(path)
    path = make_model(tmp_path / "flat_out.onnx", [helper.make_node("Relu", ["x"], ["r"]),
                                                   helper.make_node("Flatten", ["r"], ["y"])], (2, 3, 3), "y", {})
    with pytest.raises(ValueError, match="flattened in ONNX's channel order"):
        lrpnb.load(path)
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        lrpnb.load(tmp_path / "junk.onnx")
    with pytest.raises(ValueError, match="writing .onnx models is not supported"):
        lrpnb.save(lrpnb.Network([lrpnb.Rect()]), tmp_path / "out.onnx")


def test_info_shows_the_graph(tmp_path):
    import subprocess
    import sys

    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Add", ["r", "c"], ["s"], name="skip"),
             helper.make_node("GlobalAveragePool", ["s"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["y"], name="flat")]
    path = make_model(tmp_path / "m.onnx", nodes, (1, 5, 5), "y", {"w": rng.normal(size=(2, 1, 3, 3))})
    result = subprocess.run([sys.executable, "-m", "lrpnb", "info", path], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "skip" in result.stdout and "Add" in result.stdout and "relu, conv" in result.stdout
    assert "(N, 5, 5, 1)" in result.stdout


def test_explain_command_normalises_images_for_an_onnx_model(tmp_path):
    import subprocess
    import sys

    from PIL import Image

    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["y"])]
    path = make_model(tmp_path / "m.onnx", nodes, (3, 6, 6), "y",
                      {"w": rng.normal(size=(4, 3, 3, 3)), "b": rng.normal(size=4), "fc": rng.normal(size=(4, 3))})
    folder = tmp_path / "images"
    folder.mkdir()
    pixels = rng.integers(0, 256, size=(2, 6, 6, 3), dtype=np.uint8)
    for k, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{k}.png")
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.3, 0.4]
    for order in ("rgb", "bgr"):
        out = tmp_path / f"r_{order}.npy"
        command = [sys.executable, "-m", "lrpnb", "explain", "--model", path, "--data", str(folder), "--out", str(out),
                   "--rule", "epsilon", "--param", "0.01", "--input-range", "0", "1", "--mean", *map(str, mean),
                   "--std", *map(str, std), "--channel-order", order]
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        X = pixels.astype(np.float32) / 255
        X = X[..., ::-1] if order == "bgr" else X
        X = ((X - np.float32(mean)) / np.float32(std)).astype(np.float32)
        expected = lrpnb.load(path).explain(X, rule="epsilon", param=0.01)
        np.testing.assert_allclose(np.load(out), expected, rtol=1e-5, atol=1e-7)
    bad = subprocess.run([sys.executable, "-m", "lrpnb", "explain", "--model", path, "--data", str(folder),
                          "--out", str(tmp_path / "x.npy"), "--mean", "0.5", "0.5"], capture_output=True, text=True)
    assert bad.returncode == 1 and "--mean has 2 values for samples of 3 channels" in bad.stderr
    assert not (tmp_path / "x.npy").exists()


def test_lrn_and_count_include_pad(tmp_path):
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("LRN", ["x"], ["n"], size=3, alpha=0.2, beta=0.6, bias=2.0),
             helper.make_node("AveragePool", ["n"], ["y"], kernel_shape=[2, 2], pads=[1, 1, 1, 1],
                              count_include_pad=1)]
    path = make_model(tmp_path / "m.onnx", nodes, (4, 3, 3), "y", {})
    with pytest.raises(ValueError, match="flattened|scores"):
        # a pooled image is no class score: refused when explaining, not when loading
        lrpnb.load(path).explain(np.zeros((1, 3, 3, 4), np.float32))
    net = lrpnb.load(path)
    lrn, pool = net.layers
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.bias) == (3, pytest.approx(0.2), pytest.approx(0.6), 2.0)
    assert pool.count_include_pad and pool.padding == (1, 1, 1, 1)
    X = rng.normal(size=(2, 4, 3, 3))
    square = X ** 2
    window = np.stack([square[:, max(0, c - 1):c + 2].sum(axis=1) for c in range(4)], axis=1)
    normalised = X / (2.0 + 0.2 / 3 * window) ** 0.6
    expected = naive.avgpool_forward(to_nhwc(normalised), (2, 2), (1, 1), (1, 1, 1, 1), True)
    np.testing.assert_allclose(net.forward(to_nhwc(X)), expected, rtol=1e-5)

"""Max and average pools with padding and ceil mode (PyTorch's and ONNX's
``ceil_mode``), and 1-D pools as (1, k) windows: the output size, the
forward pass and every rule against the plain-numpy reference in naive.py,
conservation where the rule conserves, PyTorch where it is installed, and
the lrpnb format's round trip."""
import json
import zipfile

import numpy as np
import pytest

import lrpnb
import naive
from conftest import relative_error
from lrpnb.layers.pool import pooled_size

RULES = [("simple", None), ("epsilon", 0.01), ("alphabeta", 2.0), ("alphabeta", 1.0), ("flat", None),
         ("ww", None), ("zplus", None), ("gamma", 0.25), ("zb", (-2.0, 1.5)), ("gradient", None)]
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}

# (input shape, pool, stride, padding (top, bottom, left, right))
CASES = {
    # overhang past the end padding: rows 1, columns 1
    "odd-sizes": ((2, 7, 9, 3), (2, 4), (2, 3), (0, 0, 0, 0)),
    # rows: the 4th window would start at row 9 of 9, so it is dropped; columns: overhang 2
    "stride-above-kernel": ((2, 9, 9, 2), (2, 3), (3, 4), (0, 0, 0, 0)),
    "stride-below-kernel": ((1, 6, 7, 2), (3, 4), (2, 3), (0, 0, 0, 0)),
    "padded": ((2, 6, 5, 2), (3, 3), (2, 2), (1, 1, 1, 1)),
    "asymmetric-padding": ((1, 7, 6, 2), (3, 2), (2, 3), (1, 0, 0, 1)),
    # rows: ceil((5+2-2)/2)+1 = 4 windows, the 4th would start at row 6 of the
    # padded 7, in the end padding, so it is dropped
    "last-window-in-end-padding": ((2, 5, 5, 2), (2, 2), (2, 2), (1, 1, 1, 1)),
    # rows: overhang 2 (where ONNX's reference AveragePool shifts its windows)
    "overhang-two": ((1, 4, 6, 2), (3, 3), (3, 3), (0, 0, 0, 0)),
    # columns: 5 windows, overhang 2
    "one-dimensional": ((2, 1, 12, 3), (1, 4), (1, 3), (0, 0, 1, 1)),
    "smaller-than-window": ((1, 2, 3, 2), (3, 4), (2, 2), (0, 0, 0, 0)),
}


def check(actual, expected, dtype):
    assert actual.dtype == dtype
    assert actual.shape == expected.shape
    assert relative_error(actual, expected) <= TOLERANCE[dtype]


def case_input(shape, seed, ties):
    rng = np.random.default_rng(seed)
    return rng.integers(-2, 3, size=shape).astype(float) if ties else rng.normal(size=shape) + 0.3


@pytest.mark.parametrize("size, kernel, stride, begin, end, ceil, expected", [
    (7, 3, 2, 0, 0, False, 3), (7, 3, 2, 0, 0, True, 3), (8, 3, 2, 0, 0, False, 3), (8, 3, 2, 0, 0, True, 4),
    (5, 2, 2, 1, 1, False, 3), (5, 2, 2, 1, 1, True, 3),  # the 4th window would start in the end padding
    (6, 2, 2, 1, 1, True, 4), (2, 3, 2, 0, 0, True, 1), (2, 3, 2, 0, 0, False, 0),
    (8, 2, 3, 0, 0, False, 3), (8, 2, 3, 0, 0, True, 3), (9, 2, 3, 0, 0, True, 3), (10, 2, 3, 0, 0, True, 4),
    (1, 1, 5, 0, 0, True, 1),
])
def test_output_length(size, kernel, stride, begin, end, ceil, expected):
    assert pooled_size(size, kernel, stride, begin, end, ceil) == expected
    assert naive.pooled_length(size, kernel, stride, begin, end, ceil) == expected


def test_output_length_matches_torch():
    torch = pytest.importorskip("torch")
    for size in range(1, 12):
        for kernel in range(1, 6):
            for stride in range(1, 6):
                for pad in range(0, (kernel - 1) // 2 + 1):
                    expected = pooled_size(size, kernel, stride, pad, pad, True)
                    if expected < 1:
                        continue
                    x = torch.zeros(1, 1, size)
                    shape = torch.nn.functional.max_pool1d(x, kernel, stride, pad, ceil_mode=True).shape
                    assert shape[2] == expected, (size, kernel, stride, pad)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
def test_maxpool_forward_and_rules(case, ties, dtype):
    shape, pool, stride, padding = CASES[case]
    layer = lrpnb.MaxPool(pool, stride, padding=padding, ceil_mode=True)
    X = case_input(shape, 1, ties)
    Y = layer.forward(X.astype(dtype))
    expected = naive.maxpool2d_forward(X, pool, stride, padding, True)
    assert layer.output_shape(shape) == expected.shape
    check(Y, expected, dtype)
    R = np.random.default_rng(2).normal(size=Y.shape)
    for rule in RULES:
        name, value = lrpnb.rules.resolve(*rule)
        actual = layer.relevance(X.astype(dtype), Y, R.astype(dtype), name, value)
        check(actual, naive.maxpool2d_lrp(X, R, pool, stride, padding, True, name), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("include_pad", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
def test_average_pool_forward_and_rules(case, include_pad, dtype):
    shape, pool, stride, padding = CASES[case]
    layer = lrpnb.AveragePool(pool, stride, padding=padding, count_include_pad=include_pad, ceil_mode=True)
    X = case_input(shape, 3, False)
    Y = layer.forward(X.astype(dtype))
    args = (pool, stride, padding, include_pad, True)
    expected = naive.avgpool2d_forward(X, *args)
    assert layer.output_shape(shape) == expected.shape
    check(Y, expected, dtype)
    R = np.random.default_rng(4).normal(size=Y.shape)
    for rule in RULES:
        name, value = lrpnb.rules.resolve(*rule)
        actual = layer.relevance(X.astype(dtype), Y, R.astype(dtype), name, value)
        check(actual, naive.avgpool2d_lrp(X, R, *args, name, value), dtype)


def test_count_include_pad_leaves_out_the_overhang():
    """H = 4, window 3, stride 2, padding 1 at both ends: windows at rows
    -1..1, 1..3 and 3..5; the last covers row 3, the end padding (row 4) and
    row 5 beyond it, so it counts 2 places with the padding, 1 without."""
    X = np.arange(1.0, 5.0).reshape(1, 4, 1, 1)
    counted = lrpnb.AveragePool((3, 1), (2, 1), padding=(1, 1, 0, 0), count_include_pad=True, ceil_mode=True)
    np.testing.assert_allclose(counted.forward(X).ravel(), [3 / 3, 9 / 3, 4 / 2])
    inside = lrpnb.AveragePool((3, 1), (2, 1), padding=(1, 1, 0, 0), ceil_mode=True)
    np.testing.assert_allclose(inside.forward(X).ravel(), [3 / 2, 9 / 3, 4 / 1])
    # floor mode keeps two windows, both of three counted places
    floor = lrpnb.AveragePool((3, 1), (2, 1), padding=(1, 1, 0, 0), count_include_pad=True)
    np.testing.assert_allclose(floor.forward(X).ravel(), [3 / 3, 9 / 3])


def test_maxpool_overhang_never_wins():
    X = -np.arange(1.0, 6.0).reshape(1, 1, 5, 1)  # all negative: a zero or padding place would win
    layer = lrpnb.MaxPool((1, 2), (1, 2), ceil_mode=True)
    np.testing.assert_array_equal(layer.forward(X).ravel(), [-1.0, -3.0, -5.0])
    R = np.array([1.0, 2.0, 4.0]).reshape(1, 1, 3, 1)
    for rule in ("epsilon", "gradient"):
        np.testing.assert_array_equal(layer.relevance(X, layer.forward(X), R, rule, 0.01).ravel(),
                                      [1.0, 0.0, 2.0, 0.0, 4.0])


@pytest.mark.parametrize("case", ["odd-sizes", "stride-above-kernel", "padded", "last-window-in-end-padding",
                                  "overhang-two", "one-dimensional"])
def test_conservation(case):
    """Relevance goes to the real inputs only, and windows partly outside the
    image share all of theirs among the inputs they cover: the rules that
    conserve on a pool conserve in ceil mode."""
    shape, pool, stride, padding = CASES[case]
    X = np.random.default_rng(6).random(shape) + 0.1  # positive: every rule below conserves exactly
    for layer, rules in [
        (lrpnb.MaxPool(pool, stride, padding=padding, ceil_mode=True),
         [("simple", None), ("epsilon", 0.01), ("alphabeta", 2.0), ("gradient", None)]),
        (lrpnb.AveragePool(pool, stride, padding=padding, ceil_mode=True),
         [("simple", None), ("alphabeta", 1.0), ("flat", None), ("ww", None)]),
        (lrpnb.AveragePool(pool, stride, padding=padding, count_include_pad=True, ceil_mode=True),
         [("simple", None), ("alphabeta", 1.0), ("flat", None), ("ww", None)]),
    ]:
        Y = layer.forward(X)
        R = np.random.default_rng(7).random(Y.shape)
        for rule in rules:
            Rx = layer.relevance(X, Y, R, *lrpnb.rules.resolve(*rule))
            np.testing.assert_allclose(Rx.sum(axis=(1, 2)), R.sum(axis=(1, 2)), rtol=1e-12, err_msg=str(rule))


def torch_cases():
    """The cases whose padding is symmetric on each axis, as PyTorch pads."""
    return [name for name, (_, _, _, (t, b, left, right)) in sorted(CASES.items()) if t == b and left == right
            and CASES[name][3][0] <= CASES[name][1][0] // 2 and CASES[name][3][2] <= CASES[name][1][1] // 2]


@pytest.mark.parametrize("case", torch_cases())
def test_against_torch(case):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    shape, pool, stride, padding = CASES[case]
    X = case_input(shape, 8, False)
    R = np.random.default_rng(9).normal(size=lrpnb.MaxPool(pool, stride, padding, True).output_shape(shape))
    tpad = (padding[0], padding[2])
    for layer, pooled in [
        (lrpnb.MaxPool(pool, stride, padding, ceil_mode=True),
         lambda x: F.max_pool2d(x, pool, stride, tpad, ceil_mode=True)),
        (lrpnb.AveragePool(pool, stride, padding, count_include_pad=False, ceil_mode=True),
         lambda x: F.avg_pool2d(x, pool, stride, tpad, ceil_mode=True, count_include_pad=False)),
        (lrpnb.AveragePool(pool, stride, padding, count_include_pad=True, ceil_mode=True),
         lambda x: F.avg_pool2d(x, pool, stride, tpad, ceil_mode=True, count_include_pad=True)),
    ]:
        x = torch.tensor(X.transpose(0, 3, 1, 2), requires_grad=True)
        y = pooled(x)
        y.backward(torch.tensor(R.transpose(0, 3, 1, 2)))
        Y = layer.forward(X)
        np.testing.assert_allclose(Y, y.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer.relevance(X, Y, R, "gradient", None),
                                   x.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-14)


def test_one_dimensional_pools_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    X = np.random.default_rng(10).normal(size=(2, 1, 13, 3))
    x = torch.tensor(X[:, 0].transpose(0, 2, 1))  # (N, C, W)
    for ceil in (False, True):
        maxpool = lrpnb.MaxPool((1, 3), (1, 2), padding=(0, 0, 1, 1), ceil_mode=ceil)
        expected = F.max_pool1d(x, 3, 2, 1, ceil_mode=ceil).numpy()
        np.testing.assert_array_equal(maxpool.forward(X)[:, 0], expected.transpose(0, 2, 1))
        average = lrpnb.AveragePool((1, 4), (1, 3), padding=(0, 0, 1, 1), count_include_pad=True, ceil_mode=ceil)
        expected = F.avg_pool1d(x, 4, 3, 1, ceil_mode=ceil, count_include_pad=True).numpy()
        np.testing.assert_allclose(average.forward(X)[:, 0], expected.transpose(0, 2, 1), rtol=1e-12)


def test_in_a_network():
    rng = np.random.default_rng(11)
    net = lrpnb.Network([
        lrpnb.Convolution(rng.normal(size=(3, 3, 2, 4)) / 3, rng.normal(size=4) / 10, padding=1), lrpnb.Rect(),
        lrpnb.MaxPool((3, 3), (2, 2), ceil_mode=True),
        lrpnb.AveragePool((2, 2), (2, 2), padding=1, count_include_pad=True, ceil_mode=True),
        lrpnb.Flatten(), lrpnb.Linear(rng.normal(size=(36, 3)), np.zeros(3))])
    X = rng.normal(size=(2, 8, 8, 2))
    # 8 -> ceil((8-3)/2)+1 = 4 -> ceil((4+2-2)/2)+1 = 3, so 3*3*4 = 36 features
    assert net.forward(X).shape == (2, 3)
    R = net.explain(X, target=1, rule="flat")
    assert R.shape == X.shape and np.isfinite(R).all()


def test_parameters_and_describe():
    assert lrpnb.MaxPool((3, 3), (2, 2), ceil_mode=True).describe() == "MaxPool 3 3 2 2 ceil"
    assert lrpnb.MaxPool((3, 3), (2, 2)).describe() == "MaxPool 3 3 2 2"
    assert lrpnb.MaxPool((3, 3), (2, 2), 1, True).describe() == "MaxPool 3 3 2 2 pad 1,1,1,1 ceil"
    layer = lrpnb.AveragePool((3, 3), (2, 2), 1, True, True)
    assert layer.describe() == "AveragePool 3 3 2 2 pad 1,1,1,1 counted ceil"
    assert lrpnb.MaxPool().ceil_mode is False and lrpnb.AveragePool().ceil_mode is False
    assert lrpnb.MaxPool().toolbox and not lrpnb.MaxPool(ceil_mode=True).toolbox
    with pytest.raises(ValueError, match="MaxPool: ceil_mode must be True or False, got 'yes'"):
        lrpnb.MaxPool(ceil_mode="yes")
    with pytest.raises(ValueError, match=r"expects input of shape \(N, H>=2, W>=1, D\), got \(N, 1, 4, 2\)"):
        lrpnb.MaxPool((3, 2), (2, 2), ceil_mode=True).output_shape((1, 1, 4, 2))
    with pytest.raises(ValueError, match=r"expects input of shape \(N, H>=3, W>=2, D\), got \(N, 2, 4, 2\)"):
        lrpnb.MaxPool((3, 2), (2, 2)).output_shape((1, 2, 4, 2))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lrpnb_format_round_trip(tmp_path, dtype):
    net = lrpnb.Network([
        lrpnb.MaxPool((3, 3), (2, 2), padding=(1, 0, 1, 0), ceil_mode=True),
        lrpnb.AveragePool((2, 3), (2, 2), padding=1, count_include_pad=True, ceil_mode=True),
        lrpnb.AveragePool((2, 2), (1, 1)), lrpnb.Flatten()])
    path = tmp_path / "ceil.lrpnb"
    lrpnb.save(net, path)
    back = lrpnb.load(path)
    assert [layer.describe() for layer in back.layers] == [layer.describe() for layer in net.layers]
    assert [layer.ceil_mode for layer in back.layers[:3]] == [True, True, False]
    X = np.random.default_rng(12).normal(size=(2, 9, 8, 2)).astype(dtype)
    assert back.forward(X).tobytes() == net.forward(X).tobytes()
    assert back.explain(X, target=0).tobytes() == net.explain(X, target=0).tobytes()
    with zipfile.ZipFile(path) as archive:
        nodes = json.loads(archive.read("model.json"))["nodes"]
    # ceil_mode is written where it is on only: files of floor-mode pools are as before
    assert nodes[0]["params"]["ceil_mode"] is True and "ceil_mode" not in nodes[2]["params"]


def test_lrpnb_format_refuses_a_bad_ceil_mode(tmp_path):
    path = tmp_path / "ceil.lrpnb"
    lrpnb.save(lrpnb.Network([lrpnb.MaxPool((2, 2), (2, 2), ceil_mode=True), lrpnb.Flatten()]), path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    description = json.loads(members["model.json"])
    description["nodes"][0]["params"]["ceil_mode"] = "yes"
    members["model.json"] = json.dumps(description).encode()
    bad = tmp_path / "bad.lrpnb"
    with zipfile.ZipFile(bad, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match=r"bad\.lrpnb.*node 0.*MaxPool parameter 'ceil_mode'"):
        lrpnb.load(bad)


def onnx_reference_pool(op, X, kernel, stride, pads, **attributes):
    """ONNX's reference implementation of ``op`` with ceil_mode=1 on NCHW ``X``."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    node = helper.make_node(op, ["x"], ["y"], kernel_shape=list(kernel), strides=list(stride), pads=list(pads),
                            ceil_mode=1, **attributes)
    graph = helper.make_graph([node], "pool", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, X.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None] * 4)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    onnx.checker.check_model(model)
    return ReferenceEvaluator(model).run(None, {"x": X})[0]


@pytest.mark.parametrize("include_pad", [0, 1])
def test_onnx_reference_agrees_where_the_overhang_is_at_most_one(include_pad):
    """H = 6 and W = 7, kernel 3, stride 2, padding 1: the last windows
    overhang the end padding by 1 row and 0 columns; ONNX's reference and
    lrpnb agree on both pools."""
    X = np.random.default_rng(13).normal(size=(1, 6, 7, 2))
    nchw = X.transpose(0, 3, 1, 2)
    average = lrpnb.AveragePool((3, 3), (2, 2), padding=1, count_include_pad=include_pad, ceil_mode=True)
    expected = onnx_reference_pool("AveragePool", nchw, (3, 3), (2, 2), (1, 1, 1, 1),
                                   count_include_pad=include_pad)
    np.testing.assert_allclose(average.forward(X), expected.transpose(0, 2, 3, 1), rtol=1e-12)
    maxpool = lrpnb.MaxPool((3, 3), (2, 2), padding=1, ceil_mode=True)
    expected = onnx_reference_pool("MaxPool", nchw, (3, 3), (2, 2), (1, 1, 1, 1))
    np.testing.assert_array_equal(maxpool.forward(X), expected.transpose(0, 2, 3, 1))


def test_onnx_reference_average_pool_shifts_windows_where_the_overhang_is_two():
    """docs/rules.md's example: H = 4, kernel 3, stride 3, an overhang of 2.
    lrpnb (as PyTorch) pools rows 0-2 and 3; ONNX's reference AveragePool
    rows 0-1 and 2, its MaxPool as PyTorch."""
    X = np.array([1.0, 2.0, 4.0, 8.0]).reshape(1, 4, 1, 1)
    nchw = X.transpose(0, 3, 1, 2)
    average = lrpnb.AveragePool((3, 1), (3, 1), ceil_mode=True)
    np.testing.assert_allclose(average.forward(X).ravel(), [7 / 3, 8.0], rtol=1e-15)
    reference = onnx_reference_pool("AveragePool", nchw, (3, 1), (3, 1), (0, 0, 0, 0))
    np.testing.assert_allclose(reference.ravel(), [3 / 2, 4.0], rtol=1e-15)
    np.testing.assert_array_equal(lrpnb.MaxPool((3, 1), (3, 1), ceil_mode=True).forward(X).ravel(), [4.0, 8.0])
    reference = onnx_reference_pool("MaxPool", nchw, (3, 1), (3, 1), (0, 0, 0, 0))
    np.testing.assert_array_equal(reference.ravel(), [4.0, 8.0])

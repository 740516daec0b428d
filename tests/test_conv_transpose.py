"""ConvTranspose: the forward pass against the scatter definition (and torch's
conv_transpose2d where torch is installed), every rule against the dense
formulation of the layer (its matrix built from the naive forward pass on
unit vectors), the checks of its arguments, and its round trip through
lrpnb's model format."""
import numpy as np
import pytest

import lrpnb
from lrpnb.layers import ConvTranspose
from lrpnb.network import Node
from lrpnb.rules import resolve

import naive

#: (W's ONNX shape (C_in, C_out/groups, h, w), stride, padding (top, bottom,
#: left, right), output_padding, dilation, groups, input (H, W))
CASES = {
    "stride2-padded": ((3, 2, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), (1, 1), 1, (3, 4)),
    "asymmetric-dilated-grouped": ((4, 3, 2, 3), (2, 3), (0, 2, 1, 0), (1, 2), (2, 1), 2, (3, 3)),
    "wide-unit-stride": ((6, 5, 2, 2), (1, 1), (0, 0, 0, 0), (0, 0), (1, 1), 1, (3, 4)),
    # output padding beyond the end padding: rows no input reaches hold the bias
    "output-padding-past-the-end": ((2, 2, 2, 1), (3, 2), (1, 0, 0, 0), (2, 1), (1, 1), 1, (2, 3)),
    "depthwise-dilated": ((3, 1, 3, 2), (2, 1), (2, 1, 0, 1), (0, 0), (2, 2), 3, (4, 3)),
}

RULES = [("simple", None), ("epsilon", 0.1), ("alphabeta", 2.0), ("alphabeta", 1.0), ("zplus", None),
         ("gamma", 0.25), ("flat", None), ("ww", None), ("zb", (-2.0, 2.0)), ("zb", "per channel"),
         ("gradient", None), ("deconvnet", None), ("guided_backprop", None)]


def channel_bounds(rule, param, channels):
    """(rule, param), z^B's "per channel" made bounds of one value per input channel."""
    if param == "per channel":
        return rule, (-np.linspace(0.5, 3.0, channels), np.linspace(1.0, 2.0, channels))
    return rule, param


def setup(name, dtype=np.float64, ties=False, batch=2):
    """(layer, X, W in ONNX's layout, B, the case's geometry as keywords)."""
    shape, stride, padding, output_padding, dilation, groups, size = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    W = rng.normal(size=shape)
    B = rng.normal(size=shape[1] * groups)
    X = rng.integers(-2, 3, size=(batch, *size, shape[0])) if ties else rng.normal(size=(batch, *size, shape[0]))
    geometry = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation,
                    groups=groups)
    layer = ConvTranspose(W.transpose(2, 3, 1, 0).astype(dtype), B.astype(dtype), **geometry)
    return layer, X.astype(dtype), W, B, geometry


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_the_scatter_definition(name, dtype):
    layer, X, W, B, geometry = setup(name, dtype)
    Y = layer.forward(X)
    expected = naive.conv_transpose_forward(X.astype(np.float64), W, B, **geometry)
    assert Y.dtype == dtype and Y.shape == expected.shape == layer.output_shape(X.shape)
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    assert np.abs(Y - expected).max() <= tolerance * np.abs(expected).max()


def test_output_size_formula():
    # (H - 1) s - top - bottom + d (k - 1) + output_padding + 1, per axis
    layer, X, *_ = setup("asymmetric-dilated-grouped")
    assert layer.output_shape(X.shape) == (2, (3 - 1) * 2 - 0 - 2 + 2 * (2 - 1) + 1 + 1,
                                           (3 - 1) * 3 - 1 - 0 + 1 * (3 - 1) + 2 + 1, 6)
    # rows past the end that no input reaches carry the bias alone
    layer, X, W, B, _ = setup("output-padding-past-the-end")
    Y = layer.forward(X)
    assert Y.shape[1] == (2 - 1) * 3 - 1 + 1 + 2 + 1
    assert np.array_equal(Y[:, -1, :, :], np.broadcast_to(B, Y[:, -1].shape))


@pytest.mark.parametrize("name", ["stride2-padded", "asymmetric-dilated-grouped", "wide-unit-stride",
                                  "depthwise-dilated"])
def test_forward_matches_torch(name):
    torch = pytest.importorskip("torch")
    layer, X, W, B, geometry = setup(name)
    top, bottom, left, right = geometry["padding"]
    # torch pads both sides of an axis alike: the symmetric part here, the rest cut off below
    rows, columns = min(top, bottom), min(left, right)
    expected = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(X.transpose(0, 3, 1, 2).copy()), torch.from_numpy(W), torch.from_numpy(B),
        stride=geometry["stride"], padding=(rows, columns), output_padding=geometry["output_padding"],
        groups=geometry["groups"], dilation=geometry["dilation"]).numpy().transpose(0, 2, 3, 1)
    expected = expected[:, top - rows:expected.shape[1] - (bottom - rows),
                        left - columns:expected.shape[2] - (right - columns)]
    Y = layer.forward(X)
    assert Y.shape == expected.shape
    assert np.abs(Y - expected).max() <= 1e-12 * np.abs(expected).max()


def dense_relevance(layer, X, W, B, geometry, R, rule, param):
    """The rule on the dense matrix of the layer (naive.linear_map_lrp)."""
    N, shape = X.shape[0], X.shape[1:]
    M = naive.linear_matrix(lambda x: naive.conv_transpose_forward(x, W, np.zeros_like(B), **geometry), shape)
    connected = naive.linear_matrix(
        lambda x: naive.conv_transpose_forward(x, np.ones_like(W), np.zeros_like(B), **geometry), shape)
    bias = np.broadcast_to(B, R.shape[1:]).reshape(-1)
    if rule in ("deconvnet", "guided_backprop"):
        rule = "gradient"  # a linear layer passes the plain gradient back
    if rule == "zb":
        param = tuple(np.broadcast_to(np.asarray(bound, dtype=np.float64), shape).reshape(-1) for bound in param)
    return naive.linear_map_lrp(X.reshape(N, -1).astype(np.float64), M, bias, R.reshape(N, -1), rule, param,
                                connected).reshape(X.shape)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("name", sorted(CASES))
def test_every_rule_matches_the_dense_formulation(name, ties):
    layer, X, W, B, geometry = setup(name, ties=ties)
    Y = layer.forward(X)
    R = np.random.default_rng(3).normal(size=Y.shape)
    for rule, param in RULES:
        canonical, value = resolve(*channel_bounds(rule, param, X.shape[3]))
        actual = layer.relevance(X, Y, R, canonical, value)
        expected = dense_relevance(layer, X, W, B, geometry, R, canonical, value)
        assert actual.shape == X.shape and actual.dtype == X.dtype
        assert np.abs(actual - expected).max() <= 1e-9 * max(1.0, np.abs(expected).max()), (rule, param)


def test_float32_relevance_stays_float32_and_close():
    layer64, X, *_ = setup("asymmetric-dilated-grouped")
    layer32, X32, *_ = setup("asymmetric-dilated-grouped", np.float32)
    Y64, Y32 = layer64.forward(X), layer32.forward(X32)
    R = np.random.default_rng(4).normal(size=Y64.shape)
    for rule, param in RULES:
        canonical, value = resolve(*channel_bounds(rule, param, X.shape[3]))
        expected = layer64.relevance(X, Y64, R, canonical, value)
        actual = layer32.relevance(X32, Y32, R.astype(np.float32), canonical, value)
        assert actual.dtype == np.float32
        assert np.abs(actual - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max()), rule


def test_relevance_is_conserved_without_bias():
    # epsilon with a tiny stabilizer and no bias: every output's relevance reaches the inputs
    layer, X, W, _, geometry = setup("stride2-padded")
    layer = ConvTranspose(layer.W, np.zeros(layer.out_channels), **geometry)
    Y = layer.forward(X)
    R = np.abs(np.random.default_rng(5).normal(size=Y.shape))
    Rx = layer.relevance(X, Y, R, "epsilon", 1e-12)
    assert np.allclose(Rx.sum(axis=(1, 2, 3)), R.sum(axis=(1, 2, 3)), rtol=1e-8)


@pytest.mark.parametrize("arguments, message", [
    (dict(groups=4), "groups must be a positive divisor of the 6 input channels"),
    (dict(B=np.zeros(3)), "B must have 4 values"),
    (dict(output_padding=-1), "output_padding must be a non-negative int"),
    (dict(output_padding=(1, 2, 3)), "output_padding must be a non-negative int"),
    (dict(stride=0), "stride must be positive"),
    (dict(padding=(1, -1)), "padding must be a non-negative int"),
])
def test_bad_arguments_are_refused(arguments, message):
    keywords = dict(W=np.ones((2, 2, 2, 6)), B=np.zeros(4), groups=2)
    keywords.update(arguments)
    with pytest.raises(ValueError, match=message):
        ConvTranspose(**keywords)


def test_shapes_that_do_not_fit_are_refused():
    layer = ConvTranspose(np.ones((2, 2, 3, 4)), np.zeros(3), stride=1, padding=(2, 1, 0, 0))
    with pytest.raises(ValueError, match=r"expects input of shape \(N, H, W, 4\), got \(N, 3, 3, 2\)"):
        layer.output_shape((1, 3, 3, 2))
    with pytest.raises(ValueError, match="removes every output row or column"):
        layer.output_shape((1, 1, 3, 4))
    assert layer.output_shape((1, 3, 3, 4)) == (1, 1, 4, 3)


def test_describe():
    layer, *_ = setup("asymmetric-dilated-grouped")
    assert layer.describe() == ("ConvTranspose 2 3 3 4 2 3 pad 0,2,1,0 output_padding 1,2 dilation 2,1 groups 2")
    assert not layer.toolbox


def decoder(dtype):
    """A small segmentation-style network: conv, ReLU, a transposed
    convolution that upsamples, a 1x1 head; input (N, 4, 4, 2)."""
    rng = np.random.default_rng(7)
    W = rng.normal(size=(3, 3, 2, 4)).astype(dtype)
    up = ConvTranspose(rng.normal(size=(3, 3, 2, 4)).astype(dtype), rng.normal(size=4).astype(dtype), stride=2,
                       padding=(1, 1, 1, 1), output_padding=(1, 1), dilation=(1, 2), groups=2)
    return lrpnb.Network([
        Node("conv", lrpnb.Convolution(W, rng.normal(size=4).astype(dtype), padding=1), "input"),
        Node("relu", lrpnb.Rect(), "conv"),
        Node("up", up, "relu"),
        Node("pool", lrpnb.GlobalAveragePool(), "up"),
        Node("flat", lrpnb.Flatten(), "pool"),
        Node("head", lrpnb.Linear(rng.normal(size=(4, 3)).astype(dtype), rng.normal(size=3).astype(dtype)),
             "flat"),
    ])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_model_graph_round_trip(tmp_path, dtype):
    net = decoder(dtype)
    net.node("up").layer.set_lrp_parameters("gamma", 0.5)
    path = tmp_path / "decoder.lrpnb"
    lrpnb.save(net, path)
    back = lrpnb.load(path)
    layer, loaded = net.node("up").layer, back.node("up").layer
    assert type(loaded) is ConvTranspose and loaded.describe() == layer.describe()
    assert loaded.W.tobytes() == layer.W.tobytes() and loaded.W.dtype == dtype
    assert (loaded.output_padding, loaded.preset.name, loaded.lrp_param) == ((1, 1), "gamma", 0.5)
    X = np.random.default_rng(8).normal(size=(2, 4, 4, 2)).astype(dtype)
    assert net.scores(X).tobytes() == back.scores(X).tobytes()
    for rule, param in [(None, None), ("epsilon", 0.01), ("alphabeta", 2.0), ("flat", None), ("gradient", None)]:
        assert net.explain(X, rule=rule, param=param).tobytes() == back.explain(X, rule=rule, param=param).tobytes()


def test_composites_treat_it_as_a_convolution():
    """zennit's composites count ConvTranspose among the convolutions (its
    types.Convolution): z+ under EpsilonPlus, alpha-beta under
    EpsilonAlpha2Beta1, flat when it is the first layer of EpsilonPlusFlat."""
    rng = np.random.default_rng(0)
    up = ConvTranspose(rng.normal(size=(2, 2, 3, 2)), np.zeros(3), stride=(2, 2))
    dense = lrpnb.Linear(rng.normal(size=(4 * 4 * 3, 5)), np.zeros(5))
    layers = [up, lrpnb.Flatten(), dense]
    assert [rule.name for rule in lrpnb.EpsilonPlus().rules(layers)] == ["zplus", "epsilon", "epsilon"]
    assert lrpnb.EpsilonAlpha2Beta1().rules(layers)[0] == ("alphabeta", 2.0)
    assert lrpnb.EpsilonPlusFlat().rules(layers)[0].name == "flat"

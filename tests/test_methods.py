"""Gradient methods, the z+, gamma and z^B rules, composites, and many
targets from one forward pass."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lrpnb
import naive
from conftest import EXAMPLES, relative_error
from test_kernels import make_array, random_network

MODERN = [("zplus", None), ("gamma", 0.25), ("gamma", 1.0), ("zb", (-1.5, 2.0))]


def smooth_network(seed):
    """Convolution, Tanh, sum and max pooling, dense: differentiable almost everywhere."""
    rng = np.random.default_rng(seed)
    layers = [lrpnb.Convolution(rng.normal(size=(3, 3, 2, 4)) / 3, rng.normal(size=4) / 5),
              lrpnb.Tanh(), lrpnb.SumPool((2, 2), (1, 1)),
              lrpnb.Convolution(rng.normal(size=(2, 2, 4, 3)) / 3, rng.normal(size=3) / 5),
              lrpnb.Tanh(), lrpnb.MaxPool((2, 2), (2, 2)), lrpnb.Flatten(),
              lrpnb.Linear(rng.normal(size=(12, 5)) / 2, rng.normal(size=5) / 5), lrpnb.SoftMax()]
    spec = [("conv", dict(W=layers[0].W, B=layers[0].B, stride=(1, 1))), ("tanh", {}),
            ("sumpool", dict(pool=(2, 2), stride=(1, 1))),
            ("conv", dict(W=layers[3].W, B=layers[3].B, stride=(1, 1))), ("tanh", {}),
            ("maxpool", dict(pool=(2, 2), stride=(2, 2))), ("flatten", {}),
            ("linear", dict(W=layers[7].W, B=layers[7].B))]
    return lrpnb.Network(layers), spec


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_against_finite_differences(seed):
    net, spec = smooth_network(seed)
    X = np.random.default_rng(seed + 10).normal(size=(2, 9, 9, 2))
    target = np.array([1, 3])
    gradient = net.explain(X, target=target, rule="gradient")
    scores = lrpnb.Network(net.layers[:-1])
    step = 1e-6
    rng = np.random.default_rng(seed)
    for _ in range(25):
        n, p, q, c = (int(rng.integers(s)) for s in X.shape)
        up, down = X.copy(), X.copy()
        up[n, p, q, c] += step
        down[n, p, q, c] -= step
        numeric = (scores.forward(up)[n, target[n]] - scores.forward(down)[n, target[n]]) / (2 * step)
        assert gradient[n, p, q, c] == pytest.approx(numeric, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("method", ["gradient", "deconvnet", "guided_backprop"])
@given(seed=st.integers(0, 2**32 - 1), depth=st.integers(0, 2))
def test_backward_methods_against_the_reference(method, seed, depth):
    net, spec, X = random_network(seed, depth)
    acts = naive.network_forward(spec[:-1], X)
    target = acts[-1].argmax(axis=1)
    start = np.zeros_like(acts[-1])
    start[np.arange(len(X)), target] = 1.0
    expected = naive.network_gradient(spec[:-1], acts, start, method)
    actual = net.explain(X, rule=method)
    assert relative_error(actual, expected) <= 1e-10


def test_sensitivity_and_gradient_times_input():
    net, _ = smooth_network(4)
    X = np.random.default_rng(4).normal(size=(3, 9, 9, 2))
    gradient = net.explain(X, rule="gradient")
    sensitivity = net.explain(X, rule="sensitivity")
    assert sensitivity.shape == (3, 9, 9, 1)
    np.testing.assert_allclose(sensitivity[..., 0], np.sqrt((gradient ** 2).sum(axis=-1)), rtol=1e-12)
    np.testing.assert_allclose(net.explain(X, rule="gradient_x_input"), X * gradient, rtol=1e-12)
    mlp = lrpnb.load(EXAMPLES / "mlp.txt")
    V = np.loadtxt(EXAMPLES / "mlp_inputs.txt")
    np.testing.assert_allclose(mlp.explain(V, rule="sensitivity"), np.abs(mlp.explain(V, rule="gradient")))


def test_deconvnet_and_guided_backprop_by_hand():
    # y = relu(x W) v with W = [[1, -1], [1, 1]], v = (1, -1): the signal
    # reaching the ReLU from above is v = (1, -1)
    W = np.array([[1.0, -1.0], [1.0, 1.0]])
    net = lrpnb.Network([lrpnb.Linear(W, np.zeros(2)), lrpnb.Rect(),
                         lrpnb.Linear(np.array([[1.0], [-1.0]]), np.zeros(1))])
    active = np.array([[1.0, 2.0]])     # x W = (3, 1): both units on
    inactive = np.array([[1.0, -2.0]])  # x W = (-1, -3): both units off
    # gradient: (1, -1) through the mask, then W^T
    np.testing.assert_allclose(net.explain(active, target=0, rule="gradient"), [[2.0, 0.0]])
    np.testing.assert_allclose(net.explain(inactive, target=0, rule="gradient"), [[0.0, 0.0]])
    # deconvnet: only the positive signal (1, 0), whatever the mask
    np.testing.assert_allclose(net.explain(active, target=0, rule="deconvnet"), [[1.0, 1.0]])
    np.testing.assert_allclose(net.explain(inactive, target=0, rule="deconvnet"), [[1.0, 1.0]])
    # guided backprop: positive signal where the unit is on
    np.testing.assert_allclose(net.explain(active, target=0, rule="guided_backprop"), [[1.0, 1.0]])
    np.testing.assert_allclose(net.explain(inactive, target=0, rule="guided_backprop"), [[0.0, 0.0]])
    np.testing.assert_allclose(net.explain(active, target=0, rule="gradient_x_input"), [[2.0, 0.0]])


@pytest.mark.parametrize("rule, param", MODERN)
@given(seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(["continuous", "discrete"]),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_modern_rules_against_the_reference(rule, param, seed, mode, dtype):
    rng = np.random.default_rng(seed)
    d, n = int(rng.integers(1, 7)), int(rng.integers(1, 5))
    X = make_array(rng, (2, 5, 6, d), mode).astype(dtype)
    W = make_array(rng, (2, 3, d, n), mode).astype(dtype)
    B = rng.normal(size=n).astype(dtype)
    conv = lrpnb.Convolution(W, B, stride=(1, 2))
    Y = conv.forward(X)
    R = rng.normal(size=Y.shape).astype(dtype)
    name, value = lrpnb.rules.resolve(rule, param)
    expected = naive.conv_lrp(X.astype(np.float64), W.astype(np.float64), B.astype(np.float64),
                              R.astype(np.float64), (1, 2), rule, value)
    tolerance = 1e-10 if dtype == np.float64 else 1e-4
    assert relative_error(conv.relevance(X, Y, R, name, value), expected) <= tolerance
    dense = lrpnb.Linear(W.reshape(-1, n)[: 4 * d], B)
    Xd = np.ascontiguousarray(X.reshape(2, -1)[:, : 4 * d])
    Yd = dense.forward(Xd)
    Rd = np.ascontiguousarray(R.reshape(2, -1)[:, :n])
    expected = naive.dense_lrp(Xd.astype(np.float64), dense.W.astype(np.float64), B.astype(np.float64),
                               Rd.astype(np.float64), rule, value)
    assert relative_error(dense.relevance(Xd, Yd, Rd, name, value), expected) <= tolerance


@pytest.mark.parametrize("rule, param", [("zplus", None), ("zb", (-1.0, 1.0)), ("gamma", 0.5)])
def test_conservation_without_biases(rule, param):
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, size=(4, 6, 6, 2)) if rule == "zb" else rng.uniform(0, 1, size=(4, 6, 6, 2))
    layer = lrpnb.Convolution(rng.normal(size=(3, 3, 2, 3)), np.zeros(3))
    Y = layer.forward(X)
    R = np.abs(rng.normal(size=Y.shape)) * (Y != 0)
    name, value = lrpnb.rules.resolve(rule, param)
    relevance = layer.relevance(X, Y, R, name, value)
    np.testing.assert_allclose(relevance.sum(axis=(1, 2, 3)), R.sum(axis=(1, 2, 3)), rtol=1e-4)


def test_zb_bounds_per_channel():
    rng = np.random.default_rng(5)
    X = rng.uniform(0, 1, size=(2, 5, 5, 3))
    layer = lrpnb.Convolution(rng.normal(size=(2, 2, 3, 2)), rng.normal(size=2))
    Y = layer.forward(X)
    R = rng.normal(size=Y.shape)
    low, high = np.array([0.0, -1.0, 0.0]), np.array([1.0, 1.0, 2.0])
    expected = naive.conv_lrp(X, layer.W, layer.B, R, (1, 1), "zb", (low, high))
    actual = layer.relevance(X, Y, R, *lrpnb.rules.resolve("zb", (low, high)))
    assert relative_error(actual, expected) <= 1e-10
    with pytest.raises(ValueError, match="has 2 values for 3 input channels"):
        layer.relevance(X, Y, R, *lrpnb.rules.resolve("zb", ([0, 0], [1, 1])))


def lenet_like(seed=0):
    rng = np.random.default_rng(seed)
    return lrpnb.Network([
        lrpnb.Convolution(rng.normal(size=(3, 3, 1, 4)) / 3, rng.normal(size=4) / 10), lrpnb.Rect(),
        lrpnb.SumPool((2, 2), (2, 2)),
        lrpnb.Convolution(rng.normal(size=(2, 2, 4, 6)) / 3, rng.normal(size=6) / 10), lrpnb.Rect(),
        lrpnb.MaxPool((2, 2), (2, 2)), lrpnb.Flatten(),
        lrpnb.Linear(rng.normal(size=(6, 8)) / 2, rng.normal(size=8) / 10), lrpnb.Rect(),
        lrpnb.Linear(rng.normal(size=(8, 4)) / 2, rng.normal(size=4) / 10), lrpnb.SoftMax()])


COMPOSITES = [
    (lambda: lrpnb.formula_type(0, epsstab=0.1), ["epsilon"] * 10),
    (lambda: lrpnb.formula_type(2, alphabeta_beta=1.0), ["alphabeta"] * 10),
    (lambda: lrpnb.formula_type(54, layer_index=2), ["flat"] * 3 + ["epsilon"] * 7),
    (lambda: lrpnb.formula_type(56, layer_index=0), ["ww"] + ["epsilon"] * 9),
    (lambda: lrpnb.formula_type(58, layer_index=3), ["flat"] * 4 + ["alphabeta"] * 6),
    (lambda: lrpnb.formula_type(60, layer_index=3), ["ww"] * 4 + ["alphabeta"] * 6),
    (lambda: lrpnb.formula_type(100), ["alphabeta", "epsilon", "epsilon", "alphabeta"] + ["epsilon"] * 6),
    (lambda: lrpnb.formula_type(102, layer_index=1), ["flat", "flat", "epsilon", "alphabeta"] + ["epsilon"] * 6),
    (lambda: lrpnb.formula_type(104, layer_index=0), ["ww", "epsilon", "epsilon", "alphabeta"] + ["epsilon"] * 6),
    (lambda: lrpnb.EpsilonPlus(), ["zplus", "epsilon", "epsilon", "zplus"] + ["epsilon"] * 6),
    (lambda: lrpnb.EpsilonAlpha2Beta1(), ["alphabeta", "epsilon", "epsilon", "alphabeta"] + ["epsilon"] * 6),
    (lambda: lrpnb.EpsilonPlusFlat(), ["flat", "epsilon", "epsilon", "zplus"] + ["epsilon"] * 6),
    (lambda: lrpnb.EpsilonAlpha2Beta1Flat(), ["flat", "epsilon", "epsilon", "alphabeta"] + ["epsilon"] * 6),
    (lambda: lrpnb.EpsilonGammaBox(low=-1.0, high=1.0), ["zb", "epsilon", "epsilon", "gamma"] + ["epsilon"] * 6),
]


@pytest.mark.parametrize("make, expected_rules", COMPOSITES)
def test_composites_equal_their_presets(make, expected_rules):
    composite = make()
    net = lenet_like()
    X = np.random.default_rng(1).uniform(-1, 1, size=(3, 10, 10, 1))
    rules = composite.rules(net.layers)
    assert [name for name, _ in rules][:10] == expected_rules
    by_composite = net.explain(X, composite=composite)
    for layer, (name, value) in zip(net.layers, rules):
        layer.set_lrp_parameters(name, value)
    np.testing.assert_array_equal(net.explain(X), by_composite)
    fresh = lenet_like()
    fresh.set_composite(composite)
    np.testing.assert_array_equal(fresh.explain(X), by_composite)


def test_formula_type_100_is_alpha2_on_convolutions():
    net = lenet_like()
    X = np.random.default_rng(1).uniform(-1, 1, size=(3, 10, 10, 1))
    for k, layer in enumerate(net.layers):
        layer.set_lrp_parameters(*(("alphabeta", 2.0) if isinstance(layer, lrpnb.Convolution)
                                   else ("epsilon", 0.01)))
    np.testing.assert_array_equal(lenet_like().explain(X, composite=lrpnb.formula_type(100)), net.explain(X))


@pytest.mark.parametrize("number, method", [(11, "gradient"), (26, "deconvnet"), (99, "sensitivity"),
                                            (166, "guided_backprop")])
def test_gradient_formula_types(number, method):
    net = lenet_like()
    X = np.random.default_rng(2).uniform(-1, 1, size=(2, 10, 10, 1))
    np.testing.assert_array_equal(net.explain(X, composite=lrpnb.formula_type(number)),
                                  net.explain(X, rule=method))


@pytest.mark.parametrize("make, message", [
    (lambda: lrpnb.formula_type(7), "unknown formula type 7; known: 0 "),
    (lambda: lrpnb.formula_type(54), "formula type 54 needs layer_index"),
    (lambda: lrpnb.formula_type(0, epsstab=-1), "epsilon must be > 0"),
    (lambda: lrpnb.formula_type(2, alphabeta_beta=-0.5), "alphabeta_beta must be >= 0"),
    (lambda: lrpnb.EpsilonGammaBox(low=1.0, high=0.0), "needs low <= high"),
    (lambda: lenet_like().explain(np.zeros((1, 10, 10, 1)), composite=lrpnb.formula_type(56, layer_index=11)),
     r"layer index 11 is outside the network \(layers 0..10\)"),
    (lambda: lenet_like().explain(np.zeros((1, 10, 10, 1)), rule="zb"), r"needs its bounds: param=\(low, high\)"),
    (lambda: lenet_like().explain(np.zeros((1, 10, 10, 1)), rule="gamma", param=-1), "gamma must be >= 0"),
    (lambda: lenet_like().explain(np.zeros((1, 10, 10, 1)), rule="epsilon", param=0.1,
                                  composite=lrpnb.EpsilonPlus()), "either a rule"),
    (lambda: lenet_like().explain(np.zeros((1, 10, 10, 1)), target=("topk", 9)), r"1 <= k <= 4"),
    (lambda: lenet_like().explain(np.zeros((1, 10, 10, 1)), target="everything"), "'all'"),
])
def test_wrong_use_is_a_clear_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("samples", [5, 100])  # 100: the targets run in two groups
@pytest.mark.parametrize("rule, param", [("epsilon", 0.01), ("alphabeta", 2.0), ("gradient", None)])
def test_many_targets_from_one_forward_pass(rule, param, samples):
    net = lenet_like()
    X = np.random.default_rng(3).uniform(-1, 1, size=(samples, 10, 10, 1))
    every = net.explain(X, target="all", rule=rule, param=param)
    assert every.shape == (samples, 4, 10, 10, 1)
    for c in range(4):
        np.testing.assert_allclose(every[:, c], net.explain(X, target=c, rule=rule, param=param),
                                   rtol=1e-12, atol=1e-15)
    top = net.explain(X, target=("topk", 2), rule=rule, param=param)
    order = np.argsort(-lrpnb.Network(net.layers[:-1]).forward(X), axis=1)[:, :2]
    for n in range(samples):
        for t in range(2):
            np.testing.assert_allclose(top[n, t], every[n, order[n, t]], rtol=1e-12, atol=1e-15)

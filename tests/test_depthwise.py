"""Depthwise convolutions (lrpnb/kernels/depthwise.py through Convolution's
depthwise path): against the plain-numpy reference in naive.py and against
the per-group path, for every rule, with stride, padding, dilation and a
channel multiplier."""
import numpy as np
import pytest

import lrpnb
import naive
from conftest import relative_error
from lrpnb.kernels import depthwise
from lrpnb.layers.conv import Convolution

RULES = [("simple", None), ("epsilon", 0.01), ("alphabeta", 2.0), ("alphabeta", 1.0), ("zplus", None),
         ("gamma", 0.25), ("flat", None), ("ww", None), ("zb", (-2.0, 1.5)),
         ("zb", (np.array([-1.0, -2.0, -0.5]), np.array([1.0, 2.5, 0.5]))),
         ("gradient", None), ("deconvnet", None), ("guided_backprop", None)]
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}

#: (filter (h, w), stride, padding (top, bottom, left, right), dilation, multiplier m, input (N, H, W, C))
GEOMETRIES = {
    "plain": ((3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, (2, 6, 7, 3)),
    "strided-padded": ((3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, (2, 7, 8, 3)),
    "dilated-asymmetric": ((2, 3), (2, 1), (1, 2, 0, 1), (2, 2), 1, (1, 6, 7, 3)),
    "multiplier": ((3, 2), (1, 2), (1, 1, 2, 0), (1, 1), 2, (2, 5, 6, 3)),
    "multiplier-strided-dilated": ((3, 3), (2, 2), (2, 2, 2, 2), (2, 1), 2, (1, 7, 7, 3)),
}


def case(name, dtype, seed=0):
    (h, w), stride, padding, dilation, m, shape = GEOMETRIES[name]
    rng = np.random.default_rng(seed)
    X = rng.normal(size=shape)
    X[rng.random(shape) < 0.15] = 0
    C = shape[3]
    W, B = rng.normal(size=(h, w, 1, C * m)), rng.normal(size=C * m)
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=C)
    return X, W, B, options, Convolution(W.astype(dtype), B.astype(dtype), **options)


def check(actual, expected, dtype):
    assert actual.dtype == dtype
    assert actual.shape == expected.shape
    assert relative_error(actual, expected) <= TOLERANCE[dtype]


def naive_rule(rule):
    """The reference's name of a rule: deconvnet and guided backprop change
    what a ReLU passes back, not a convolution's gradient."""
    return "gradient" if rule in ("deconvnet", "guided_backprop") else rule


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_depthwise_path_matches_the_reference_and_the_grouped_path(geometry, dtype, monkeypatch):
    X, W, B, options, layer = case(geometry, dtype)
    assert layer.depthwise
    Xd = X.astype(dtype)
    Y = layer.forward(Xd)
    check(Y, naive.conv_general_forward(X, W, B, **options), dtype)
    R = np.random.default_rng(1).normal(size=Y.shape).astype(dtype)
    ours = {}
    for rule, param in RULES:
        name, value = lrpnb.rules.resolve(rule, param)
        ours[rule, str(param)] = actual = layer.relevance(Xd, Y, R, name, value)
        check(actual, naive.conv_general_lrp(X, W, B, R.astype(np.float64), naive_rule(rule), param, **options),
              dtype)
    # the same layer computed group by group
    monkeypatch.setattr(Convolution, "depthwise", property(lambda self: False))
    grouped = Convolution(W.astype(dtype), B.astype(dtype), **options)
    check(grouped.forward(Xd), Y.astype(np.float64), dtype)
    for rule, param in RULES:
        name, value = lrpnb.rules.resolve(rule, param)
        check(grouped.relevance(Xd, Y, R, name, value), ours[rule, str(param)].astype(np.float64), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inputs_without_negative_values(dtype):
    """After a ReLU the sign-paired rules leave the negative inputs' terms out."""
    X, W, B, options, layer = case("multiplier", dtype, seed=3)
    X = np.maximum(X, 0)
    Xd = X.astype(dtype)
    Y = layer.forward(Xd)
    R = np.random.default_rng(2).normal(size=Y.shape).astype(dtype)
    for rule, param in [("alphabeta", 2.0), ("zplus", None), ("gamma", 0.25)]:
        name, value = lrpnb.rules.resolve(rule, param)
        check(layer.relevance(Xd, Y, R, name, value),
              naive.conv_general_lrp(X, W, B, R.astype(np.float64), rule, param, **options), dtype)


def test_only_one_input_channel_per_group_is_depthwise():
    assert Convolution(np.ones((3, 3, 1, 4)), np.zeros(4), groups=4).depthwise
    assert Convolution(np.ones((3, 3, 1, 8)), np.zeros(8), groups=4).depthwise
    assert not Convolution(np.ones((3, 3, 2, 4)), np.zeros(4), groups=2).depthwise
    assert not Convolution(np.ones((3, 3, 1, 4)), np.zeros(4)).depthwise


def test_kernels_are_deterministic_and_keep_float32():
    """Sums in a fixed order: the same bits at every call, and across the
    blocks of rows that run in parallel (a batch explained whole or sample
    by sample)."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(5, 9, 10, 16)).astype(np.float32)
    W, B = rng.normal(size=(3, 3, 1, 16)).astype(np.float32), rng.normal(size=16).astype(np.float32)
    Y = depthwise.conv_forward(X, W, B, 1, 1)
    R = rng.normal(size=Y.shape).astype(np.float32)
    A, Bm = depthwise.paired_weights(W, np.float32(0), lrpnb.rule_math.PAIRED_ALPHABETA)
    Ba, Bb = depthwise.paired_weights(B, np.float32(0), lrpnb.rule_math.PAIRED_ALPHABETA)
    passes = [lambda X, Y, R: depthwise.conv_relevance_epsilon(X, W, Y, R, 1, 1, np.float32(1e-6)),
              lambda X, Y, R: depthwise.conv_relevance_paired(X, A, Bm, Ba, Bb, Y, R, 1, 1,
                                                              lrpnb.rule_math.PAIRED_ALPHABETA, np.float32(1),
                                                              np.float32(0), np.float32(1e-6)),
              lambda X, Y, R: depthwise.conv_backward(X, W, R, 1, 1)]
    for relevance in passes:
        whole = relevance(X, Y, R)
        assert whole.dtype == np.float32
        np.testing.assert_array_equal(relevance(X, Y, R), whole)
        by_sample = np.concatenate([relevance(X[n:n + 1], Y[n:n + 1], R[n:n + 1]) for n in range(len(X))])
        np.testing.assert_array_equal(by_sample, whole)


def test_a_filter_that_is_not_depthwise_is_refused():
    X = np.zeros((1, 4, 4, 3))
    with pytest.raises(ValueError, match=r"depthwise.py: a depthwise filter has shape \(h, w, 1, m \* 3\)"):
        depthwise.conv_forward(X, np.zeros((3, 3, 1, 4)), np.zeros(4), 1, 1)
    with pytest.raises(ValueError, match="depthwise.py: a depthwise filter"):
        depthwise.conv_backward(X, np.zeros((3, 3, 3, 3)), np.zeros((1, 2, 2, 3)), 1, 1)

"""Numerics and resource safety (issue 27): rule parameters that do not hold
in the data's dtype, non-finite scores and relevance, NaN in max pooling,
replacement values, and decompression or allocation bombs in the readers."""
import numpy as np
import pytest

import lrpnb
from lrpnb.kernels import pool as cpu_pool


def small_net(seed=0):
    rng = np.random.default_rng(seed)
    return lrpnb.Network([lrpnb.Convolution(rng.normal(size=(3, 3, 1, 2)), np.zeros(2)), lrpnb.Rect(),
                          lrpnb.MaxPool((2, 2), (2, 2)), lrpnb.Flatten(),
                          lrpnb.Linear(rng.normal(size=(8, 3)), np.zeros(3))])


def images(dtype=np.float32, n=4):
    X = np.random.default_rng(1).normal(size=(n, 6, 6, 1)).astype(dtype)
    X[:, :3] = 0  # windows of zeros: the stabilizer is all the divisor has
    return X


def test_epsilon_that_is_zero_in_float32_is_refused():
    with pytest.raises(ValueError, match=r"epsilon \(1e-300\) is 0 in float32"):
        small_net().explain(images(np.float32), rule="epsilon", param=1e-300)
    assert np.isfinite(small_net().explain(images(np.float64), rule="epsilon", param=1e-300)).all()


@pytest.mark.parametrize("rule, param", [("alphabeta", 1e300), ("gamma", 1e300), ("zb", (-1e300, 1.0))])
def test_parameters_that_overflow_float32_are_refused(rule, param):
    with pytest.raises(ValueError, match="overflows float32"):
        small_net().explain(images(np.float32), rule=rule, param=param)


def test_composite_parameters_are_checked_too():
    with pytest.raises(ValueError, match="is 0 in float32"):
        small_net().explain(images(np.float32), composite=lrpnb.composites.EpsilonPlus(1e-300))


def test_relevance_that_overflows_is_an_error_not_nan():
    with pytest.raises(ValueError, match=r"relevance of sample 0 is not finite"):
        small_net().explain(images(np.float64), rule="alphabeta", param=1e300)


def test_overflow_inside_the_network_names_the_samples():
    X = images(np.float32, n=9)
    X[3] *= np.float32(1e38)
    X[7] *= np.float32(1e38)
    with pytest.raises(ValueError, match=r"the scores of samples 3, 7 are not finite \(overflow inside"):
        small_net().explain(X, rule="epsilon", param=0.1)
    with pytest.raises(ValueError, match=r"samples 3, 7 are not finite"):
        small_net().explain(X, rule="gradient")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxpool_window_without_winner_gives_nothing(dtype):
    X = np.ones((1, 2, 2, 2), dtype=dtype)
    X[0, :, :, 0] = np.nan
    Y = cpu_pool.maxpool_forward(X, 2, 2, 2, 2)
    R = np.ones((1, 1, 1, 2), dtype=dtype)
    Rx = cpu_pool.maxpool_relevance_winners(X, Y, R, 2, 2, 2, 2)
    assert (Rx[..., 0] == 0).all()
    assert Rx[..., 1].sum() == 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(replace=1e308), r"replace must be finite in the data's dtype \(float32"),
    (dict(replace="uniform", value_range=(-1e308, 1e308)), "replacement values are not finite"),
])
def test_replacement_must_be_finite_in_the_dtype(kwargs, message):
    from lrpnb import evaluate

    net, X = small_net(), images(np.float32)
    R = net.explain(X, rule="epsilon", param=0.1)
    with pytest.raises(ValueError, match=message):
        evaluate.perturbation_curve(net, X, R, region=2, **kwargs)
    assert np.isfinite(evaluate.perturbation_curve(net, X.astype(np.float64), R, region=2, steps=2,
                                                   replace=1e30)).all()

"""lrpnb.evaluate: region perturbation curves and AOPC against the plain
reference of tests/naive.py (written from Samek et al., IEEE TNNLS 2017), a
hand-made network with a known answer, the conservation report, and errors."""
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

import lrpnb
import naive
from conftest import relative_error
from lrpnb import evaluate
from lrpnb.kernels import perturb

TOLERANCE = {np.float32: 1e-6, np.float64: 1e-12}


def small_cnn(seed=3):
    """A conv net (and its naive spec) on 10 x 10 x 2 images, 3 classes."""
    rng = np.random.default_rng(seed)
    W1, B1 = rng.normal(size=(3, 3, 2, 4)) / 4, 0.1 * rng.normal(size=4)
    W2, B2 = rng.normal(size=(64, 3)) / 8, 0.1 * rng.normal(size=3)
    layers = [lrpnb.Convolution(W1, B1, (1, 1)), lrpnb.Rect(), lrpnb.SumPool((2, 2), (2, 2)),
              lrpnb.Flatten(), lrpnb.Linear(W2, B2), lrpnb.SoftMax()]
    spec = [("conv", dict(W=W1, B=B1, stride=(1, 1))), ("rect", {}),
            ("sumpool", dict(pool=(2, 2), stride=(2, 2))), ("flatten", {}), ("linear", dict(W=W2, B=B2))]
    X = rng.normal(size=(5, 10, 10, 2))
    return lrpnb.Network(layers), spec, X


def naive_score(spec, target):
    def score(x):
        return naive.network_forward(spec, x[None].astype(np.float64))[-1][0, target]
    return score


def linear_model():
    """Score = sum of the 4 x 4 input times weights 1..16 (row by row); no bias."""
    W = np.arange(1, 17, dtype=np.float64).reshape(16, 1)
    return lrpnb.Network([lrpnb.Flatten(), lrpnb.Linear(W, np.zeros(1))]), W.reshape(1, 4, 4, 1)


# ---------------------------------------------------------------- known answers
def test_known_answer_on_a_linear_model():
    net, W = linear_model()
    X = np.ones((1, 4, 4, 1))
    R = X * W  # each input's exact contribution
    # 2 x 2 regions hold the weights {1,2,5,6}=14, {3,4,7,8}=22, {9,10,13,14}=46, {11,12,15,16}=54
    curve = evaluate.perturbation_curve(net, X, R, region=2, replace=0.0)
    np.testing.assert_allclose(curve, [[136, 82, 36, 14, 0]])
    curve = evaluate.perturbation_curve(net, X, R, region=2, order="lerf", replace=0.0)
    np.testing.assert_allclose(curve, [[136, 122, 100, 54, 0]])
    # replaced by 2: each region's contribution doubles, the most relevant first
    curve = evaluate.perturbation_curve(net, X, R, region=(2, 2), steps=2, replace=2.0)
    np.testing.assert_allclose(curve, [[136, 190, 236]])
    # AOPC = mean of (136 - f_k) over k = 0..4
    assert evaluate.aopc(evaluate.perturbation_curve(net, X, R, region=2, replace=0.0)) == \
        pytest.approx((0 + 54 + 100 + 122 + 136) / 5)


def test_ties_keep_grid_order_and_short_edge_regions():
    net, W = linear_model()
    X = np.ones((1, 4, 4, 1))
    flat = np.ones_like(X)  # every 2 x 2 region has the same relevance: grid order
    curve = evaluate.perturbation_curve(net, X, flat, region=2, replace=0.0)
    np.testing.assert_allclose(curve, [[136, 122, 100, 54, 0]])
    curve = evaluate.perturbation_curve(net, X, flat, region=2, order="lerf", replace=0.0)
    np.testing.assert_allclose(curve, [[136, 122, 100, 54, 0]])
    # 3 x 3 regions on 4 x 4: a 3x3 tile, a 3x1 column, a 1x3 row and a 1x1 corner
    curve = evaluate.perturbation_curve(net, X, X * W, region=3, replace=0.0)
    # tiles: {1,2,3,5,6,7,9,10,11}=54, {4,8,12}=24, {13,14,15}=42, {16}=16
    np.testing.assert_allclose(curve, [[136, 82, 40, 16, 0]])


def test_replacement_modes():
    net, W = linear_model()
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 2, size=(3, 4, 4, 1))
    R = X * W
    full = lambda curve: curve[:, -1]  # noqa: E731 - every region replaced
    mean = X.mean(axis=(1, 2, 3))
    np.testing.assert_allclose(full(evaluate.perturbation_curve(net, X, R, region=2, replace="mean")),
                               mean * 136)
    blurred = gaussian_filter(X, (0, 1.5, 1.5, 0), mode="nearest")
    np.testing.assert_allclose(full(evaluate.perturbation_curve(net, X, R, region=2, replace="blur",
                                                                blur_sigma=1.5)),
                               blurred.reshape(3, 16) @ W.reshape(16))
    # a constant image blurs to itself: the curve stays flat
    flat = evaluate.perturbation_curve(net, np.full((1, 4, 4, 1), 0.5), R[:1], region=2, replace="blur")
    np.testing.assert_allclose(flat, 68.0)
    # uniform values inside the range given, or each sample's own range
    pinned = evaluate.perturbation_curve(net, X, R, region=2, replace="uniform", value_range=(3, 3))
    np.testing.assert_allclose(full(pinned), 3 * 136)
    own = full(evaluate.perturbation_curve(net, X, R, region=2, replace="uniform"))
    assert np.all(own >= X.min(axis=(1, 2, 3)) * 136) and np.all(own <= X.max(axis=(1, 2, 3)) * 136)


def test_seed_makes_uniform_values_and_random_order_repeatable():
    net, spec, X = small_cnn()
    R = net.explain(X, rule="epsilon", param=0.01)
    one = evaluate.perturbation_curve(net, X, R, region=2, steps=10, replace="uniform", seed=5)
    np.testing.assert_array_equal(one, evaluate.perturbation_curve(net, X, R, region=2, steps=10,
                                                                   replace="uniform", seed=5))
    assert not np.array_equal(one, evaluate.perturbation_curve(net, X, R, region=2, steps=10,
                                                               replace="uniform", seed=6))
    first = evaluate.perturbation_curve(net, X, None, region=2, order="random", replace=0.0, seed=1)
    np.testing.assert_array_equal(first, evaluate.perturbation_curve(net, X, None, region=2,
                                                                     order="random", replace=0.0, seed=1))
    # whatever the order, once every region is replaced the input is all zeros
    target = net.scores(X).argmax(axis=1)
    zeros = net.scores(np.zeros_like(X))[np.arange(len(X)), target]
    np.testing.assert_allclose(first[:, -1], zeros, rtol=1e-12)


# ---------------------------------------------------------------- against the reference
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("region, order, replace", [(2, "morf", 0.0), ((3, 2), "lerf", "mean"),
                                                    (4, "morf", "blur"), (1, "morf", -0.5)])
def test_curves_match_the_reference(dtype, region, order, replace):
    net, spec, X = small_cnn()
    X = X.astype(dtype)
    R = net.explain(X, rule="alphabeta", param=2.0)
    target = net.scores(X).argmin(axis=1)  # any class, not only the predicted one
    steps = 7
    curve = evaluate.perturbation_curve(net, X, R, target=target, region=region, steps=steps,
                                        order=order, replace=replace, batch_size=6)
    pair = (region, region) if isinstance(region, int) else region
    if replace == "mean":
        V = np.broadcast_to(X.mean(axis=(1, 2), keepdims=True), X.shape)
    elif replace == "blur":
        V = np.stack([np.stack([gaussian_filter(x[..., c].astype(np.float64), max(pair), mode="nearest")
                                for c in range(x.shape[-1])], axis=-1) for x in X])
    else:
        V = np.full(X.shape, replace)
    V = V.astype(dtype)
    orders = naive.region_order(R, pair, order)
    expected = [naive.region_perturbation(naive_score(spec, t), x[None], [o], v[None], steps)
                for x, o, v, t in zip(X, orders, V, target)]
    expected_curve = np.concatenate([e[0] for e in expected])
    expected_inputs = np.concatenate([e[1] for e in expected])
    # identical ranking and identical perturbed inputs ...
    _, _, images, rank, _, rh, rw = evaluate._prepare(net, X, R, region, steps, order, replace, 0, None,
                                                       None)
    copies = perturb.perturbed_copies(images, V, rank, rh, rw, steps, 0, len(X) * (steps + 1))
    np.testing.assert_array_equal(copies.reshape(expected_inputs.shape), expected_inputs)
    # ... and the same scores
    assert curve.shape == (len(X), steps + 1)
    assert relative_error(curve, expected_curve) <= TOLERANCE[dtype]
    assert evaluate.aopc(curve) == pytest.approx(naive.aopc(expected_curve), rel=10 * TOLERANCE[dtype])


def test_region_relevance_matches_the_reference():
    rng = np.random.default_rng(1)
    R = rng.normal(size=(3, 7, 9, 2)).astype(np.float32)
    sums = perturb.region_relevance(R, 3, 2)
    assert sums.shape == (3, 3 * 5) and sums.dtype == np.float64
    for n in range(3):
        expected = [R[n, i:i + 3, j:j + 2].astype(np.float64).sum()
                    for i in range(0, 7, 3) for j in range(0, 9, 2)]
        np.testing.assert_allclose(sums[n], expected, rtol=1e-12)


def test_batch_size_does_not_change_the_curve():
    net, spec, X = small_cnn()
    R = net.explain(X, rule="epsilon", param=0.01)
    whole = evaluate.perturbation_curve(net, X, R, region=2, steps=12, replace="uniform")
    for size in (1, 7, 64):
        np.testing.assert_allclose(evaluate.perturbation_curve(net, X, R, region=2, steps=12,
                                                               replace="uniform", batch_size=size),
                                   whole, rtol=1e-12)


def test_vectors_are_one_row_of_values():
    rng = np.random.default_rng(2)
    W = rng.normal(size=(12, 3))
    net = lrpnb.Network([lrpnb.Linear(W, np.zeros(3))])
    X = rng.normal(size=(4, 12))
    R = net.explain(X, rule="epsilon", param=1e-9)
    curve = evaluate.perturbation_curve(net, X, R, region=4, replace=0.0)
    assert curve.shape == (4, 4)
    target = net.scores(X).argmax(axis=1)
    orders = naive.region_order(R.reshape(4, 1, 12, 1), (1, 4), "morf")
    expected = [naive.region_perturbation(lambda x, t=t: (x.reshape(12) @ W)[t], x.reshape(1, 1, 12, 1),
                                          [o], np.zeros((1, 1, 12, 1)), 3)[0][0]
                for x, o, t in zip(X, orders, target)]
    np.testing.assert_allclose(curve, expected, rtol=1e-12, atol=1e-12)


def test_aopc_of_hand_made_curves():
    curves = np.array([[4.0, 3.0, 1.0], [2.0, 2.0, 2.0]])
    assert evaluate.aopc(curves) == pytest.approx(((0 + 1 + 3) / 3 + 0) / 2)
    np.testing.assert_allclose(evaluate.aopc(curves, per_sample=True), [4 / 3, 0])


def test_good_explanations_beat_random_on_the_embedded_lenet():
    """The issue's check: on lrpnb's own LeNet-5 and held-out synthetic
    digits, epsilon and alpha-beta fall faster than a random order."""
    from lrpnb.digits import synthetic_digits
    from lrpnb.pipeline.options import embedded_model

    net = lrpnb.load(embedded_model())
    X = synthetic_digits(200, seed=7).images
    settings = dict(region=2, steps=64, replace="uniform", seed=0)
    random = evaluate.aopc(evaluate.perturbation_curve(net, X, None, order="random", **settings))
    for rule, param in (("epsilon", 0.01), ("alphabeta", 2.0)):
        R = net.explain(X, rule=rule, param=param)
        morf = evaluate.aopc(evaluate.perturbation_curve(net, X, R, **settings))
        lerf = evaluate.aopc(evaluate.perturbation_curve(net, X, R, order="lerf", **settings))
        assert morf > 1.5 * random, (rule, morf, random)
        assert lerf < random, (rule, lerf, random)


# ---------------------------------------------------------------- conservation
def test_layer_sums_show_conservation():
    rng = np.random.default_rng(7)
    net = lrpnb.Network([
        lrpnb.Convolution(rng.normal(size=(3, 3, 2, 4)), np.zeros(4), stride=(1, 1)),
        lrpnb.Rect(), lrpnb.SumPool((2, 2), (1, 1)), lrpnb.Flatten(),
        lrpnb.Linear(rng.normal(size=(196, 5)), np.zeros(5)), lrpnb.SoftMax()])
    X = rng.normal(size=(4, 10, 10, 2))
    R, scores, sums = net.explain(X, rule="epsilon", param=1e-12, return_scores=True, return_layer_sums=True)
    assert sums.shape == (4, 6) and sums.dtype == np.float64  # 5 layers explained (not the SoftMax)
    explained = scores[np.arange(4), scores.argmax(axis=1)]
    np.testing.assert_allclose(sums[:, -1], explained, rtol=1e-15)
    np.testing.assert_allclose(sums[:, 0], R.sum(axis=(1, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(sums, np.repeat(explained[:, None], 6, axis=1), rtol=1e-6)
    # a bias absorbs relevance: the sums below it differ from the score
    net.layers[4].B = np.full(5, 3.0)
    sums = net.explain(X, rule="epsilon", param=1e-12, return_layer_sums=True)[1]
    assert np.all(np.abs(sums[:, 4] - sums[:, 5]) > 1e-3)
    every = net.explain(X, target="all", rule="epsilon", param=0.01, return_layer_sums=True)
    assert every[0].shape == (4, 5, 10, 10, 2) and every[1].shape == (4, 5, 6)
    np.testing.assert_allclose(every[1][:, :, 0], every[0].sum(axis=(2, 3, 4)), rtol=1e-10)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, message", [
    (dict(order="best"), r"order must be one of \('morf', 'lerf', 'random'\), got 'best'"),
    (dict(replace="zeros"), r"replace must be one of \('uniform', 'mean', 'blur'\) or a number, got 'zeros'"),
    (dict(replace=float("nan")), "replace must be finite"),
    (dict(region=11), r"region 11 x 11 must be at least 1 x 1 and fit the input's 10 x 10 pixels"),
    (dict(region=(0, 2)), "region 0 x 2 must be at least 1 x 1"),
    (dict(region="big"), "region must be an int or a pair of ints"),
    (dict(region=2, steps=26), "steps must be an int from 1 to the 25 regions of 2 x 2, got 26"),
    (dict(region=2, steps=0), "steps must be an int from 1 to the 25 regions"),
    (dict(target="all"), "follows one class per sample"),
    (dict(target=7), r"target classes must lie in 0..2"),
    (dict(value_range=(1, -1)), "value_range must be finite with low <= high"),
    (dict(replace="blur", blur_sigma=0), "blur_sigma must be a positive number"),
    (dict(batch_size=0), "batch_size must be a positive int"),
    (dict(seed=1.5), "seed must be an int"),
])
def test_bad_arguments(kwargs, message):
    net, spec, X = small_cnn()
    R = np.ones_like(X)
    with pytest.raises(ValueError, match=message):
        evaluate.perturbation_curve(net, X, R, **kwargs)


def test_bad_relevance_and_curves():
    net, spec, X = small_cnn()
    with pytest.raises(ValueError, match=r"R must have X's shape \(5, 10, 10, 2\), got \(5, 10, 10, 1\)"):
        evaluate.perturbation_curve(net, X, np.ones((5, 10, 10, 1)))
    with pytest.raises(ValueError, match="order 'morf' ranks the regions by R; give the relevance R"):
        evaluate.perturbation_curve(net, X, None)
    with pytest.raises(ValueError, match="R contains NaN"):
        evaluate.perturbation_curve(net, X, np.full(X.shape, np.nan))
    with pytest.raises(ValueError, match=r"curves must have shape \(N, steps \+ 1\)"):
        evaluate.aopc(np.ones(3))

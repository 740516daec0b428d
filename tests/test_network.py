"""The Network API: dtypes, targets, presets, thread safety, errors, conservation."""
import concurrent.futures

import numpy as np
import pytest

import lrpnb
from conftest import EXAMPLES


@pytest.fixture
def cnn():
    return lrpnb.load(EXAMPLES / "tiny_cnn.txt")


@pytest.fixture
def images():
    return np.load(EXAMPLES / "tiny_cnn_inputs.npy")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(cnn, images, dtype):
    X = images.astype(dtype)
    assert cnn.forward(X).dtype == dtype
    assert cnn.explain(X).dtype == dtype
    assert cnn.explain(X, rule="alphabeta", param=1.0).dtype == dtype


def test_integer_input_becomes_float64(cnn):
    X = np.zeros((2, 8, 8, 1), dtype=np.uint8)
    assert cnn.forward(X).dtype == np.float64


def test_explain_targets(cnn, images):
    scores = cnn.forward(images)
    predicted = cnn.explain(images, rule="epsilon", param=0.01)
    explicit = cnn.explain(images, target=scores.argmax(axis=1), rule="epsilon", param=0.01)
    np.testing.assert_array_equal(predicted, explicit)
    one = cnn.explain(images, target=2, rule="epsilon", param=0.01)
    by_array = cnn.explain(images, target=np.full(len(images), 2), rule="epsilon", param=0.01)
    np.testing.assert_array_equal(one, by_array)
    # explain() equals forward + lrp of the target's score alone
    start = np.zeros_like(scores)
    start[:, 2] = scores[:, 2]
    np.testing.assert_allclose(cnn.lrp(start, "epsilon", 0.01), one, rtol=1e-12, atol=0)


def test_explain_starts_before_softmax():
    net = lrpnb.load(EXAMPLES / "mlp.txt")
    X = np.loadtxt(EXAMPLES / "mlp_inputs.txt")
    probabilities = net.forward(X)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    R = net.explain(X, rule="epsilon", param=1e-12)
    logits = lrpnb.Network(net.layers[:-1]).forward(X)
    rows = np.arange(len(X))
    # Tanh passes relevance unchanged; dense biases absorb the rest
    assert np.all(np.isfinite(R))
    net.drop_softmax_output_layer()
    assert not isinstance(net.layers[-1], lrpnb.SoftMax)
    np.testing.assert_array_equal(net.explain(X, rule="epsilon", param=1e-12), R)
    np.testing.assert_allclose(net.forward(X)[rows, logits.argmax(axis=1)],
                               logits[rows, logits.argmax(axis=1)])


def test_conservation_without_biases():
    """With the epsilon rule, a tiny epsilon and zero biases, the input
    relevance sums to the explained score (Bach et al. 2015, eq. 2)."""
    rng = np.random.default_rng(7)
    net = lrpnb.Network([
        lrpnb.Convolution(rng.normal(size=(3, 3, 2, 4)), np.zeros(4), stride=(1, 1)),
        lrpnb.Rect(), lrpnb.SumPool((2, 2), (1, 1)),
        lrpnb.Convolution(rng.normal(size=(2, 2, 4, 3)), np.zeros(3), stride=(2, 2)),
        lrpnb.Rect(), lrpnb.MaxPool((2, 2), (1, 1)), lrpnb.Flatten(),
        lrpnb.Linear(rng.normal(size=(12, 5)), np.zeros(5)),
    ])
    X = rng.normal(size=(4, 10, 10, 2))
    scores = net.forward(X)
    target = scores.argmax(axis=1)
    R = net.explain(X, rule="epsilon", param=1e-12)
    np.testing.assert_allclose(R.sum(axis=(1, 2, 3)), scores[np.arange(4), target], rtol=1e-6)


def test_explain_keeps_no_state_and_is_thread_safe(cnn, images):
    expected = [cnn.explain(images[k:k + 4], rule="alphabeta", param=2.0) for k in range(0, 16, 4)]
    cnn.forward(images[:1])
    before = cnn._activations
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda k: cnn.explain(images[k:k + 4], rule="alphabeta", param=2.0),
                                [0, 4, 8, 12] * 4))
    for k, result in enumerate(results):
        np.testing.assert_array_equal(result, expected[k % 4])
    assert cnn._activations is before


def test_layer_presets_and_explicit_override(cnn, images):
    cnn.layers[0].set_lrp_parameters("flat")
    mixed = cnn.explain(images)
    cnn.layers[0].set_lrp_parameters(None)
    plain = cnn.explain(images)
    assert not np.allclose(mixed, plain)
    cnn.layers[0].set_lrp_parameters("flat")
    np.testing.assert_array_equal(cnn.explain(images, rule="simple"), plain)


@pytest.mark.parametrize("alias, canonical, param", [
    ("eps", "epsilon", 0.1), ("EPSILON", "epsilon", 0.1), ("alpha", "alphabeta", 2.0),
    ("w^2", "ww", None), ("none", "simple", None), ("Flat", "flat", None)])
def test_rule_aliases(cnn, images, alias, canonical, param):
    np.testing.assert_array_equal(cnn.explain(images, rule=alias, param=param),
                                  cnn.explain(images, rule=canonical, param=param))


@pytest.mark.parametrize("rule, param, message", [
    ("magic", None, "unknown LRP rule 'magic'; valid rules are None, 'none', 'simple'"),
    ("epsilon", None, "needs a parameter"),
    ("alphabeta", None, "needs a parameter"),
    ("epsilon", -1.0, "epsilon must be > 0"),
    ("epsilon", float("nan"), "must be finite"),
    ("alphabeta", "two", "must be a number"),
])
def test_bad_rules(cnn, images, rule, param, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("'", "'")):
        cnn.explain(images, rule=rule, param=param)
    with pytest.raises(ValueError, match="rule|epsilon|param"):
        cnn.layers[0].set_lrp_parameters(rule, param)


@pytest.mark.parametrize("shape, message", [
    ((2, 28, 28, 1), r"layer 4 \(Linear 36 3\): expects input of shape \(N, 36\), got \(N, 676\)"),
    ((2, 8, 8, 3), r"layer 0 \(Convolution 3 3 1 4 1 1\): expects input of shape \(N, H>=3, W>=3, 1\), got \(N, 8, 8, 3\)"),
    ((2, 2, 2, 1), r"layer 0 .*got \(N, 2, 2, 1\)"),
    ((2, 64), r"layer 0 .*got \(N, 64\)"),
])
def test_shape_mismatch_is_named_before_any_kernel(cnn, shape, message):
    with pytest.raises(ValueError, match=message):
        cnn.forward(np.zeros(shape))
    with pytest.raises(ValueError, match=message):
        cnn.explain(np.zeros(shape))


def test_lenet_sized_error_for_unpadded_digit():
    net = lrpnb.Network([lrpnb.Convolution(np.zeros((5, 5, 1, 2)), np.zeros(2)), lrpnb.SumPool(),
                         lrpnb.Convolution(np.zeros((5, 5, 2, 2)), np.zeros(2)), lrpnb.SumPool(),
                         lrpnb.Convolution(np.zeros((4, 4, 2, 2)), np.zeros(2)), lrpnb.SumPool()])
    net.forward(np.zeros((1, 32, 32, 1)))
    with pytest.raises(ValueError, match=r"layer 5 \(SumPool 2 2 2 2\).*got \(N, 1, 1, 2\)"):
        net.forward(np.zeros((1, 28, 28, 1)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_input_is_refused(cnn, images, bad):
    X = images.copy()
    X[3, 2, 2, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite values \\(first in sample 3\\)"):
        cnn.explain(X)


@pytest.mark.parametrize("target, message", [
    (3, "0..2"), (-1, "0..2"), (np.array([0, 1]), "2 entries for 16 samples"),
    (1.5, "int"), ("cat", "int")])
def test_bad_targets(cnn, images, target, message):
    with pytest.raises(ValueError, match=message):
        cnn.explain(images, target=target)


def test_lrp_needs_forward_and_matching_shape(cnn, images):
    with pytest.raises(RuntimeError, match="forward"):
        cnn.lrp(np.ones((16, 3)))
    cnn.forward(images)
    with pytest.raises(ValueError, match=r"shape of the last output \(16, 3\)"):
        cnn.lrp(np.ones((16, 4)))


@pytest.mark.parametrize("make, message", [
    (lambda: lrpnb.Linear(np.ones((3, 2)), np.ones(3)), "B must have 2 values"),
    (lambda: lrpnb.Linear(np.ones(3), np.ones(3)), "W must have 2 dimensions"),
    (lambda: lrpnb.Linear([[np.nan, 1.0]], [0.0, 0.0]), "NaN"),
    (lambda: lrpnb.Convolution(np.ones((2, 2, 1, 1)), np.ones(1), stride=0), "stride must be positive"),
    (lambda: lrpnb.SumPool(pool=(2, "a")), "pool must be an int or a pair"),
    (lambda: lrpnb.MaxPool(pool=(2, 2, 2)), "pool must be an int or a pair"),
    (lambda: lrpnb.Network([lrpnb.Rect(), "Rect"]), "layer 1 is a str"),
])
def test_bad_layers(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_weights_are_recast_after_assignment(cnn, images):
    X = images.astype(np.float32)
    before = cnn.forward(X)
    cnn.layers[0].W = cnn.layers[0].W * 2
    assert not np.allclose(cnn.forward(X), before)

"""Training: weight gradients against a plain-numpy reference and finite
differences, SGD on small problems, the synthetic digits."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lrpnb
import naive
from conftest import relative_error
from lrpnb.digits import synthetic_digits
from lrpnb.kernels import conv, dense
from lrpnb.training import lenet5, softmax_cross_entropy

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([np.float64, np.float32]),
       h=st.integers(1, 3), w=st.integers(1, 3), s0=st.integers(1, 3), s1=st.integers(1, 3),
       N=st.integers(1, 3), d=st.integers(1, 5), k=st.integers(1, 4))
def test_conv_weight_gradient_matches_reference(seed, dtype, h, w, s0, s1, N, d, k):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, h + 2 * s0, w + 3 * s1, d))
    Ho, Wo = (X.shape[1] - h) // s0 + 1, (X.shape[2] - w) // s1 + 1
    G = rng.normal(size=(N, Ho, Wo, k))
    dW, dB = conv.conv_weight_gradient(X.astype(dtype), G.astype(dtype), h, w, s0, s1)
    ref_W, ref_B = naive.conv_weight_gradient(X, (h, w, d, k), G, (s0, s1))
    assert dW.dtype == dB.dtype == dtype and dW.shape == ref_W.shape and dB.shape == (k,)
    assert relative_error(dW, ref_W) <= TOLERANCE[dtype]
    assert relative_error(dB, ref_B) <= TOLERANCE[dtype]


def test_weight_gradient_over_many_chunks():
    # a batch large enough for several chunks on the thread pool
    rng = np.random.default_rng(1)
    X, G = rng.normal(size=(40, 20, 20, 8)), rng.normal(size=(40, 18, 18, 6))
    dW, dB = conv.conv_weight_gradient(X, G, 3, 3, 1, 1)
    ref_W, ref_B = naive.conv_weight_gradient(X, (3, 3, 8, 6), G, (1, 1))
    assert relative_error(dW, ref_W) <= 1e-12 and relative_error(dB, ref_B) <= 1e-12
    again, _ = conv.conv_weight_gradient(X, G, 3, 3, 1, 1)
    assert np.array_equal(dW, again)  # fixed summation order


def test_dense_weight_gradient():
    rng = np.random.default_rng(2)
    X, G = rng.normal(size=(7, 5)), rng.normal(size=(7, 3))
    dW, dB = dense.dense_weight_gradient(X, G)
    np.testing.assert_allclose(dW, X.T @ G, rtol=1e-12)
    np.testing.assert_allclose(dB, G.sum(axis=0), rtol=1e-12)


def small_net(rng):
    return lrpnb.Network([
        lrpnb.Convolution(rng.normal(size=(3, 3, 2, 3)) / 3, rng.normal(size=3) / 5), lrpnb.Tanh(),
        lrpnb.MaxPool((2, 2), (1, 1)),
        lrpnb.Convolution(rng.normal(size=(2, 2, 3, 4)) / 2, rng.normal(size=4) / 5, stride=(2, 2)),
        lrpnb.Rect(), lrpnb.SumPool((2, 2), (2, 2)), lrpnb.Flatten(),
        lrpnb.Linear(rng.normal(size=(4, 3)), rng.normal(size=3) / 5), lrpnb.SoftMax()])


def test_parameter_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    net = small_net(rng)
    X = rng.normal(size=(4, 7, 7, 2))
    labels = np.array([0, 2, 1, 2])

    def loss(scores):
        return softmax_cross_entropy(scores, labels)

    value, gradients = net.parameter_gradients(X, loss)
    assert [type(layer).__name__ for layer, _, _ in gradients] == ["Convolution", "Convolution", "Linear"]
    step = 1e-6
    for layer, dW, dB in gradients:
        for name, analytic in (("W", dW), ("B", dB)):
            values = getattr(layer, name)
            numeric = np.zeros_like(values)
            for index in np.ndindex(values.shape):
                for sign in (1, -1):
                    changed = values.copy()
                    changed[index] += sign * step
                    setattr(layer, name, changed)
                    numeric[index] += sign * net.parameter_gradients(X, loss)[0] / (2 * step)
                setattr(layer, name, values)
            assert relative_error(analytic, numeric) < 1e-6, (layer, name)
    # the loss the gradients belong to: cross-entropy of the scores before SoftMax
    probabilities = net.forward(X)
    assert value == pytest.approx(-np.mean(np.log(probabilities[np.arange(4), labels])), rel=1e-10)


def blobs(count, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=count)
    centres = np.array([[2.0, 0.0], [-1.0, 2.0], [-1.0, -2.0]])
    return centres[labels] + rng.normal(scale=0.5, size=(count, 2)), labels


def mlp(seed):
    rng = np.random.default_rng(seed)
    return lrpnb.Network([lrpnb.Linear(rng.normal(size=(2, 8)), np.zeros(8)), lrpnb.Rect(),
                          lrpnb.Linear(rng.normal(size=(8, 3)) / 3, np.zeros(3))])


def test_train_learns_and_is_reproducible(capsys):
    X, y = blobs(600, 0)
    Xval, yval = blobs(300, 1)
    net = mlp(0)
    history = net.train(X, y, Xval, yval, batchsize=20, iters=300, lrate=0.05, status=100, seed=5)
    assert [h["iteration"] for h in history] == [100, 200, 300]
    assert max(h["accuracy"] for h in history) >= 0.97
    predicted = np.argmax(net.forward(Xval), axis=1)
    assert np.mean(predicted == yval) == max(h["accuracy"] for h in history)  # the best is kept
    assert "held-out accuracy" in capsys.readouterr().out
    again = mlp(0)
    again.train(X, np.eye(3)[y], Xval, np.eye(3)[yval], batchsize=20, iters=300, lrate=0.05,
                status=100, seed=5, verbose=False)  # one-hot labels as in the toolbox
    for a, b in zip(net.layers, again.layers):
        if hasattr(a, "W"):
            assert np.array_equal(a.W, b.W) and np.array_equal(a.B, b.B)
    assert capsys.readouterr().out == ""


def test_train_decay_convergence_and_transform():
    X, y = blobs(300, 2)
    seen = []

    def transform(batch):
        seen.append(batch.shape)
        return batch + 0.01

    net = mlp(1)
    history = net.train(X, y, batchsize=10, iters=2000, lrate=0.05, status=50, convergence=2,
                        lrate_decay="sublinear", transform=transform, verbose=False)
    assert len(history) < 40 and seen[0] == (10, 2)  # stopped early


@pytest.mark.parametrize("change, message", [
    (dict(Y=np.array([0, 1, 5])), "labels must lie in 0..2"),
    (dict(Y=np.array([0, 1])), "2 labels for 3 samples"),
    (dict(batchsize=4), "exceeds the 3 training samples"),
    (dict(lrate=0.0), "lrate must be > 0"),
    (dict(lrate_decay="cubic"), "lrate_decay"),
    (dict(momentum=1.0), "momentum"),
    (dict(iters=0), "iters"),
    (dict(Xval=np.zeros((2, 2))), "both Xval and Yval"),
    (dict(X=np.zeros((3, 5))), "does not fit layer 0"),
])
def test_train_refuses_bad_arguments(change, message):
    arguments = dict(X=np.zeros((3, 2)), Y=np.array([0, 1, 2]), batchsize=2, iters=5, verbose=False)
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        mlp(0).train(**arguments)


def test_train_stops_on_divergence():
    X, y = blobs(100, 3)
    with pytest.raises(FloatingPointError, match="lower lrate"):
        mlp(2).train(X * 1e30, y, batchsize=10, iters=50, lrate=1e10, verbose=False)


def test_lenet5_shape_and_scale():
    net = lenet5(seed=0)
    assert [layer.describe() for layer in net.layers if hasattr(layer, "W")] == [
        "Convolution 5 5 1 10 1 1", "Convolution 5 5 10 25 1 1", "Convolution 4 4 25 100 1 1",
        "Convolution 1 1 100 10 1 1"]
    scores = net.forward(synthetic_digits(64, seed=0).images)
    assert scores.shape == (64, 10) and 0.3 < scores.std() < 3


def test_synthetic_digits():
    digits = synthetic_digits(200, seed=4)
    assert digits.images.shape == (200, 32, 32, 1) and digits.images.dtype == np.float32
    assert digits.masks.shape == (200, 32, 32) and digits.masks.dtype == bool
    assert digits.labels.dtype == np.int64 and set(digits.labels) == set(range(10))
    assert digits.images.min() >= -1 and digits.images.max() <= 1
    assert (digits.images[:, :2] == -1).all() and not digits.masks[:, :2].any()  # padding
    again = synthetic_digits(200, seed=4)
    assert np.array_equal(digits.images, again.images) and np.array_equal(digits.labels, again.labels)
    assert not np.array_equal(digits.images, synthetic_digits(200, seed=5).images)
    bright = digits.images[..., 0] > 0.5
    assert (bright & digits.masks).sum() / bright.sum() > 0.9   # bright pixels are ink
    area = digits.masks.mean()
    assert 0.05 < area < 0.3
    small = synthetic_digits(3, seed=0, pad=False, dtype=np.float64)
    assert small.images.shape == (3, 28, 28, 1) and small.images.dtype == np.float64
    with pytest.raises(ValueError, match="count"):
        synthetic_digits(-1)


def test_mnist_images_is_the_toolbox_input():
    from conftest import DATA, need_shared, toolbox_digits
    from lrpnb.digits import mnist_images

    pixels = lrpnb.read_data(need_shared(DATA / "test_images.mat"))[:20]
    assert np.array_equal(mnist_images(pixels, dtype=np.float64), toolbox_digits(20))
    small = mnist_images(np.full((2, 4), 255, np.uint8), size=4, input_range=(0, 1))
    assert small.shape == (2, 4, 4, 1) and small[0, 1, 1, 0] == 1 and small[0, 0, 0, 0] == 0
    with pytest.raises(ValueError, match="side x side"):
        mnist_images(np.zeros((2, 5)))

"""What the Python API says about a batch that does not fit the network: the
shape expected, the shape given and what to do (one sample without the batch
axis, channels first, another image size, flattened rows); tensors detached
by duck typing; inputs that fit explained as before."""
import pathlib
import re

import numpy as np
import pytest

import lrpnb
from lrpnb import explain as passes
from lrpnb.inputs import check_input_shape, network_input

ROOT = pathlib.Path(__file__).resolve().parent.parent
LENET = ROOT / "lrpnb" / "data" / "lenet5_synthetic.txt"
MLP = ROOT / "formats" / "examples" / "mlp.txt"


@pytest.fixture(scope="module")
def lenet():
    return lrpnb.load(LENET)


@pytest.fixture(scope="module")
def digits():
    return np.random.default_rng(0).uniform(-1, 1, size=(2, 32, 32, 1)).astype(np.float32)


#: every entry of the Python API that receives X
ENTRIES = {
    "Network.explain": lambda net, X: net.explain(X),
    "explain.explain": lambda net, X: passes.explain(net, X),
    "Network.forward": lambda net, X: net.forward(X),
    "Network.scores": lambda net, X: net.scores(X),
}


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("shape, hint", [
    ((32, 32, 1), r"this looks like one sample without the batch axis: use X\[None\] "
                  r"\(or X\.reshape\(1, 32, 32, 1\)\)"),
    ((2, 1, 32, 32), r"this looks like NCHW \(channels first\): use X\.transpose\(0, 2, 3, 1\) \(in detail"),
    ((2, 28, 28, 1), r"the network expects 32 x 32 images and got 28 x 28: pad or resize them; for MNIST digits "
                     r"the toolbox pads by 2 on each side: np\.pad\(X, \(\(0, 0\), \(2, 2\), \(2, 2\), "
                     r"\(0, 0\)\), constant_values=low\)"),
    ((2, 784), r"rows of 784 values look like flattened 28 x 28 images \(MNIST digits\).*np\.pad\(X\.reshape\("
               r"-1, 28, 28, 1\), \(\(0, 0\), \(2, 2\), \(2, 2\), \(0, 0\)\), constant_values=low\)"),
    ((2, 1024), r"rows of 1024 values look like flattened images: use X\.reshape\(-1, 32, 32, 1\)"),
    ((2, 32, 32), r"the images have no channel axis: use X\[\.\.\., None\]"),
    ((2, 32, 32, 3), r"the network takes images of 1 channel \(the last axis\), got 3"),
    ((2, 1, 28, 28), r"this looks like NCHW \(channels first\): use X\.transpose\(0, 2, 3, 1\); then the network "
                     r"expects 32 x 32 images and got 28 x 28"),
])
def test_lenet_mismatch_names_expected_shape_and_hint(lenet, entry, shape, hint):
    X = np.zeros(shape, dtype=np.float32)
    given = re.escape(str(shape))
    with pytest.raises(ValueError, match=rf"^X of shape {given} does not fit the network, which expects "
                                         rf"\(N, 32, 32, 1\): {hint}"):
        ENTRIES[entry](lenet, X)


def test_following_the_hint_gives_the_explanation_of_the_right_shape(lenet, digits):
    expected = lenet.explain(digits)
    one = lenet.explain(digits[0][None])
    np.testing.assert_allclose(one, expected[:1], rtol=1e-4, atol=1e-6)
    nchw = digits.transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(lenet.explain(nchw.transpose(0, 2, 3, 1)), expected)
    rows = digits[:, 2:30, 2:30, :].reshape(2, 784)
    padded = np.pad(rows.reshape(-1, 28, 28, 1), ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=-1)
    framed = digits.copy()
    framed[:, :2], framed[:, 30:], framed[:, :, :2], framed[:, :, 30:] = -1, -1, -1, -1
    np.testing.assert_array_equal(lenet.explain(padded), lenet.explain(framed))


def test_a_mismatch_after_a_fitting_batch_is_still_caught(lenet, digits):
    lenet.explain(digits)
    with pytest.raises(ValueError, match="one sample without the batch axis"):
        lenet.explain(digits[0])
    # float32 sums may round differently for another batch size
    np.testing.assert_allclose(lenet.scores(digits[:1]), lenet.scores(digits)[:1], rtol=1e-5)


def test_a_fitting_shape_is_checked_once(monkeypatch):
    net = lrpnb.load(LENET)
    calls = []
    shapes = net.output_shapes
    monkeypatch.setattr(net, "output_shapes", lambda *args: calls.append(args) or shapes(*args))
    check_input_shape(net, (5, 32, 32, 1))
    check_input_shape(net, (3, 32, 32, 1))
    assert len(calls) == 1
    check_input_shape(net, (3, 40, 40, 1))  # another shape is checked again
    assert len(calls) == 2
    net.drop_softmax_output_layer()  # no SoftMax: the layers stay, and so does what fitted
    check_input_shape(net, (3, 40, 40, 1))
    assert len(calls) == 2


def test_larger_images_that_fit_are_still_taken(lenet):
    # LeNet-5 has no dense layer: 36 x 36 images fit and give 10 scores
    X = np.random.default_rng(1).normal(size=(2, 36, 36, 1))
    assert lenet.explain(X).shape == X.shape
    assert lenet.scores(X).shape == (2, 10)


def fully_convolutional(rng):
    """conv 3x3 (no padding) -> relu -> global average pool -> flatten -> dense: any size from 3 x 3;
    no biases, so that the epsilon rule conserves the score."""
    return lrpnb.Network([
        lrpnb.Convolution(rng.normal(size=(3, 3, 3, 4)), np.zeros(4)), lrpnb.Rect(),
        lrpnb.GlobalAveragePool(), lrpnb.Flatten(), lrpnb.Linear(rng.normal(size=(4, 5)), np.zeros(5))])


def test_fully_convolutional_networks_take_any_size_that_fits():
    rng = np.random.default_rng(2)
    net = fully_convolutional(rng)
    for size in (3, 8, 13, 40):
        X = rng.normal(size=(2, size, size + 1, 3))
        R = net.explain(X, rule="epsilon", param=1e-9)
        scores = net.scores(X)
        np.testing.assert_allclose(R.reshape(2, -1).sum(axis=1), scores.max(axis=1), rtol=1e-6)
    with pytest.raises(ValueError, match=r"expects \(N, H, W, 3\) with H x W at least 3 x 3 \(in detail: "
                                         r"input does not fit layer 0"):
        net.explain(np.zeros((1, 2, 2, 3)))
    with pytest.raises(ValueError, match=r"NCHW \(channels first\): use X\.transpose\(0, 2, 3, 1\) "):
        net.explain(np.zeros((1, 3, 9, 9)))
    with pytest.raises(ValueError, match=r"one sample without the batch axis: use X\[None\] "
                                         r"\(or X\.reshape\(1, 9, 7, 3\)\)"):
        net.explain(np.zeros((9, 7, 3)))


def test_padded_networks_take_any_size():
    rng = np.random.default_rng(5)
    net = lrpnb.Network([lrpnb.Convolution(rng.normal(size=(3, 3, 2, 4)), np.zeros(4), padding=1),
                         lrpnb.GlobalAveragePool(), lrpnb.Flatten()])
    assert net.scores(rng.normal(size=(1, 1, 1, 2))).shape == (1, 4)
    with pytest.raises(ValueError, match=r"expects \(N, H, W, 2\) of any height and width: the network takes "
                                         r"images of 2 channels \(the last axis\), got 3 \(in detail"):
        net.scores(np.zeros((1, 5, 5, 3)))


def test_a_single_value_is_not_a_batch(lenet):
    with pytest.raises(ValueError, match=r"^X must be a batch of shape \(N, \.\.\.\) with N >= 1, got shape \(7,\)"):
        lenet.explain(np.zeros(7))
    with pytest.raises(ValueError, match=r"^X must be a batch of shape \(N, \.\.\.\) with N >= 1, got shape \(6,\)"):
        lrpnb.Network([lrpnb.MaxPool()]).forward(np.zeros(6))


def test_flat_rows_into_a_28_by_28_network():
    rng = np.random.default_rng(3)
    # a 28 x 28 kernel over 28 x 28 images: one 1 x 1 x 10 map, flattened to 10 scores
    net = lrpnb.Network([lrpnb.Convolution(rng.normal(size=(28, 28, 1, 10)) / 28, np.zeros(10)), lrpnb.Flatten()])
    X = rng.normal(size=(3, 28, 28, 1))
    with pytest.raises(ValueError, match=r"of shape \(3, 784\) does not fit the network, which expects "
                                         r"\(N, 28, 28, 1\): rows of 784 values look like flattened images: "
                                         r"use X\.reshape\(-1, 28, 28, 1\)"):
        net.explain(X.reshape(3, 784))
    np.testing.assert_array_equal(net.explain(X.reshape(3, 784).reshape(-1, 28, 28, 1)), net.explain(X))


def test_vector_networks():
    net = lrpnb.load(MLP)
    X = np.random.default_rng(4).normal(size=(2, 4))
    with pytest.raises(ValueError, match=r"^X of shape \(4,\) does not fit the network, which expects \(N, 4\): "
                                         r"this looks like one sample without the batch axis: use X\[None\]"):
        net.explain(X[0])
    with pytest.raises(ValueError, match=r"expects \(N, 4\): the network takes vectors of 4 values: "
                                         r"use X\.reshape\(len\(X\), -1\)"):
        net.explain(X.reshape(2, 2, 2))
    with pytest.raises(ValueError, match=r"of shape \(2, 5\) does not fit the network, which expects \(N, 4\) "
                                         r"\(in detail: input does not fit layer 0"):
        net.explain(np.zeros((2, 5)))
    np.testing.assert_allclose(net.explain(X[0][None]), net.explain(X)[:1], rtol=1e-12)


def test_networks_without_a_fixed_shape_say_nothing_new():
    net = lrpnb.Network([lrpnb.MaxPool()])
    with pytest.raises(ValueError, match=r"^input does not fit layer 0 \(MaxPool"):
        net.forward(np.zeros((2, 6)))
    assert net.forward(np.ones((1, 4, 6, 2))).shape == (1, 2, 3, 2)
    assert lrpnb.Network([lrpnb.Rect()]).forward(-np.ones((2, 7))).max() == 0


class FakeTensor:
    """A tensor by duck typing (detach, cpu, numpy), as torch's: numpy of it
    refuses while it requires grad, as torch does."""

    def __init__(self, values, requires_grad=True, log=None):
        self.values, self.requires_grad = values, requires_grad
        self.log = [] if log is None else log
        self.shape = values.shape

    def detach(self):
        self.log.append("detach")
        return type(self)(self.values, False, self.log)

    def cpu(self):
        self.log.append("cpu")
        return self

    def numpy(self):
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad")
        return self.values


def test_duck_typed_tensors_are_detached(lenet, digits):
    log = []
    X = FakeTensor(digits, log=log)
    np.testing.assert_array_equal(lenet.explain(X), lenet.explain(digits))
    assert log == ["detach", "cpu"]
    np.testing.assert_array_equal(lenet.scores(FakeTensor(digits)), lenet.scores(digits))
    np.testing.assert_array_equal(lenet.forward(FakeTensor(digits)), lenet.forward(digits))
    with pytest.raises(ValueError, match="one sample without the batch axis"):
        lenet.explain(FakeTensor(digits[0]))


def test_tensors_numpy_cannot_take_are_refused(lenet):
    class Bfloat16(FakeTensor):
        def numpy(self):
            raise TypeError("Got unsupported ScalarType BFloat16")

    with pytest.raises(ValueError, match=r"^X: numpy cannot take this Bfloat16 \(Got unsupported ScalarType "
                                         r"BFloat16\); convert it to float32 or float64 first"):
        lenet.explain(Bfloat16(np.zeros((1, 32, 32, 1))))


def test_gpu_tensors_on_a_cpu_network_are_still_refused(lenet):
    class CudaTensor(FakeTensor):
        __cuda_array_interface__ = {"shape": (1, 32, 32, 1), "typestr": "<f4", "data": (0, False), "version": 3}

    with pytest.raises(ValueError, match="X is a GPU array but the network is on the CPU; call net.to"):
        lenet.explain(CudaTensor(np.zeros((1, 32, 32, 1), np.float32)))


def test_dlpack_only_arrays_are_taken(lenet, digits):
    class DLPack:
        def __init__(self, values):
            self.values = values

        def __dlpack__(self, **options):
            return self.values.__dlpack__(**options)

        def __dlpack_device__(self):
            return self.values.__dlpack_device__()

    np.testing.assert_array_equal(lenet.explain(DLPack(digits)), lenet.explain(digits))


def test_torch_tensors_that_require_grad(lenet, digits):
    torch = pytest.importorskip("torch")
    X = torch.tensor(digits, requires_grad=True)
    np.testing.assert_array_equal(lenet.explain(X), lenet.explain(digits))
    np.testing.assert_array_equal(lenet.scores(X), lenet.scores(digits))
    with pytest.raises(ValueError, match=r"NCHW \(channels first\): use X\.transpose\(0, 2, 3, 1\)"):
        lenet.explain(X.permute(0, 3, 1, 2))
    relevance = lenet.explain(X.permute(0, 3, 1, 2).permute(0, 2, 3, 1))  # not contiguous: copied
    np.testing.assert_array_equal(relevance, lenet.explain(digits))


def test_network_input_answers_with_the_backend(lenet, digits):
    X, kind = network_input(lenet, digits.astype(np.int64))
    assert X.dtype == np.float64 and X.flags.c_contiguous and kind == "numpy"
    with pytest.raises(ValueError, match=r"^X must be a numeric array"):
        network_input(lenet, [[1, 2], [3]])

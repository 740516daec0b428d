"""lrpnb against the original LRP Toolbox on its own LeNet-5 and MNIST digits."""
import numpy as np
import pytest

import lrpnb
from conftest import DATA, MODELS, REFERENCE, need_shared, relative_error, toolbox_digits

FORMATS = ["txt", "nn", "mat"]


@pytest.fixture(scope="module")
def reference():
    with np.load(need_shared(REFERENCE)) as archive:
        return dict(archive)


@pytest.fixture(scope="module")
def lenet():
    return lrpnb.load(need_shared(MODELS / "LeNet-5.txt"))


def test_reference_inputs_are_the_toolbox_preprocessing(reference):
    np.testing.assert_array_equal(toolbox_digits(8), reference["lenet/X"])


def test_forward_matches_toolbox(lenet, reference):
    Y = lenet.forward(reference["lenet/X"])
    assert relative_error(Y, reference["lenet/Y"]) <= 1e-12
    np.testing.assert_array_equal(Y.argmax(axis=1), reference["lenet/target"])


def _reference_keys():
    if not REFERENCE.exists():
        return [pytest.param(None, marks=pytest.mark.skip(
            reason=f"needs {REFERENCE} from the shared folder beside the repository, absent here"))]
    with np.load(REFERENCE) as archive:
        return [key for key in archive.files if key.startswith("lenet/R/")]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("key", _reference_keys())
def test_relevance_matches_toolbox(key, fmt, reference):
    net = lrpnb.load(need_shared(MODELS / f"LeNet-5.{fmt}"))
    _, _, rule, param = key.split("/")
    param = None if param == "None" else float(param)
    X = reference["lenet/X"]
    R = net.explain(X, rule=rule, param=param)
    assert relative_error(R, reference[key]) <= 1e-8
    # the same through the toolbox's own call sequence: forward, then lrp
    Y = net.forward(X)
    rows = np.arange(len(X))
    start = np.zeros_like(Y)
    start[rows, reference["lenet/target"]] = Y[rows, reference["lenet/target"]]
    assert relative_error(net.lrp(start, rule, param), reference[key]) <= 1e-8


def test_presets_are_used_when_lrp_gets_no_rule(reference):
    net = lrpnb.load(need_shared(MODELS / "LeNet-5.txt"))
    net.set_lrp_parameters("alphabeta", 2.0)
    R = net.explain(reference["lenet/X"])
    assert relative_error(R, reference["lenet/R/alphabeta/2.0"]) <= 1e-8


def test_three_formats_load_identical_weights():
    nets = [lrpnb.load(need_shared(MODELS / f"LeNet-5.{fmt}")) for fmt in FORMATS]
    kinds = [[layer.describe() for layer in net.layers] for net in nets]
    assert kinds[0] == kinds[1] == kinds[2]
    assert len(kinds[0]) == 11
    for layers in zip(*(net.layers for net in nets)):
        if hasattr(layers[0], "W"):
            for other in layers[1:]:
                np.testing.assert_array_equal(other.W, layers[0].W)
                np.testing.assert_array_equal(other.B, layers[0].B)


def test_accuracy_on_all_test_digits(lenet):
    X = toolbox_digits(10000)
    labels = lrpnb.read_data(need_shared(DATA / "test_labels.npy")).ravel().astype(int)
    predicted = np.concatenate([lenet.forward(X[k:k + 2000]).argmax(axis=1)
                                for k in range(0, len(X), 2000)])
    assert (predicted == labels).sum() == 9924


def test_float32_agrees_with_float64(lenet, reference):
    X = reference["lenet/X"]
    R32 = lenet.explain(X.astype(np.float32), rule="epsilon", param=0.01)
    assert R32.dtype == np.float32
    assert relative_error(R32, reference["lenet/R/epsilon/0.01"]) <= 1e-4


def test_xor_net_small_loads_and_runs():
    net = lrpnb.load(need_shared(MODELS / "xor_net_small.txt"))
    X = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    Y = net.forward(X)
    np.testing.assert_allclose(Y.sum(axis=1), 1.0)  # ends in SoftMax
    R = net.explain(X, rule="epsilon", param=1e-9)
    assert R.shape == X.shape

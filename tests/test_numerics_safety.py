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


# ---------------------------------------------------------------- size limits
from lrpnb import data_io, sources  # noqa: E402


@pytest.fixture
def small_floor(monkeypatch):
    """A size floor of 1 KB, so that bombs of a few MB show the ratio limit."""
    monkeypatch.delenv(data_io.LIMIT_VARIABLE, raising=False)
    monkeypatch.setattr(data_io, "MAX_ARRAY_FLOOR", 1000)


def test_npz_decompression_bomb_is_refused(tmp_path, small_floor, monkeypatch):
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, data=np.zeros((1000, 1000), dtype=np.float32))  # 4 MB in a few KB
    assert path.stat().st_size * data_io.MAX_ARRAY_RATIO < 4_000_000
    with pytest.raises(ValueError, match=r"bomb.npz: member 'data' of shape \(1000, 1000\) .* would take "
                                         r"4,000,000 bytes.*LRPNB_MAX_ARRAY_BYTES"):
        data_io.read_data(path)
    monkeypatch.setenv(data_io.LIMIT_VARIABLE, "5e6")
    assert data_io.read_data(path).shape == (1000, 1000)


def test_npz_within_the_ratio_is_read(tmp_path, small_floor):
    path = tmp_path / "fine.npz"
    np.savez_compressed(path, data=np.random.default_rng(0).normal(size=(100, 100)))
    assert data_io.read_data(path).shape == (100, 100)


def test_hdf5_fill_value_bomb_is_refused(tmp_path, monkeypatch):
    h5py = pytest.importorskip("h5py")
    monkeypatch.delenv(data_io.LIMIT_VARIABLE, raising=False)
    path = tmp_path / "bomb.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("x", shape=(10**6, 10**5), dtype="f4", fillvalue=1)
    with pytest.raises(ValueError, match=r"bomb.h5:x: the dataset of shape \(1000000, 100000\) .* would take "
                                         r"400,000,000,000 bytes"):
        sources.open_source(path)


def test_hdf5_gzip_bomb_is_refused(tmp_path, small_floor):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "bomb.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("x", data=np.zeros((1000, 1000), dtype="f4"), compression="gzip", chunks=(100, 1000))
    with pytest.raises(ValueError, match="would take 4,000,000 bytes"):
        sources.open_source(str(path) + ":x")


def test_mat73_fill_value_bomb_is_refused(tmp_path, monkeypatch):
    h5py = pytest.importorskip("h5py")
    monkeypatch.delenv(data_io.LIMIT_VARIABLE, raising=False)
    path = tmp_path / "bomb.mat"
    with h5py.File(path, "w", userblock_size=512) as handle:
        handle.create_dataset("data", shape=(10**5, 10**6), dtype="f8", fillvalue=1)
    with pytest.raises(ValueError, match=r"bomb.mat:data: the dataset .* would take 800,000,000,000 bytes"):
        data_io.read_data(path)


def onnx_flatten(path, shape, dilations=None):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, source = [], [], "x"
    if dilations is not None:
        inits.append(numpy_helper.from_array(np.ones((1, shape[0], 3, 3), dtype=np.float32), "w"))
        nodes.append(helper.make_node("Conv", ["x", "w"], ["c"], dilations=dilations))
        source = "c"
    nodes.append(helper.make_node("Flatten", [source], ["y"]))
    graph = helper.make_graph(nodes, "bomb", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_onnx_declared_input_shape_bomb_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(data_io.LIMIT_VARIABLE, raising=False)
    onnx_flatten(tmp_path / "bomb.onnx", (3, 10000, 10000))
    from lrpnb.onnx_import import read_onnx

    with pytest.raises(ValueError, match=r"bomb.onnx: node .*Flatten.*feature order .* would take "
                                         r"2,400,000,000 bytes.*LRPNB_MAX_ARRAY_BYTES"):
        read_onnx(tmp_path / "bomb.onnx")


def test_onnx_dilation_bomb_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(data_io.LIMIT_VARIABLE, raising=False)
    onnx_flatten(tmp_path / "bomb.onnx", (1, 100000, 100000), dilations=[40000, 40000])
    from lrpnb.onnx_import import read_onnx

    with pytest.raises(ValueError, match=r"dilated filters .* would take"):
        read_onnx(tmp_path / "bomb.onnx")


def test_images_resized_beyond_the_limit_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(data_io.LIMIT_VARIABLE, raising=False)
    with pytest.raises(ValueError, match=r"images: a batch of 1 of 40000 x 40000 x 3 float32 would take "
                                         r"19,200,000,000 bytes"):
        sources.ImageSource(["a.png"], (40000, 40000, 3), (0.0, 1.0))
    source = sources.ImageSource(["a.png"] * 4000, (400, 400, 3), (0.0, 1.0))
    with pytest.raises(ValueError, match="a batch of 4000 of 400 x 400 x 3"):
        source.batch(0, 4000)


@pytest.mark.parametrize("value", ["lots", "-5"])
def test_bad_limit_variable(monkeypatch, value):
    monkeypatch.setenv(data_io.LIMIT_VARIABLE, value)
    with pytest.raises(ValueError, match="LRPNB_MAX_ARRAY_BYTES must be"):
        data_io.array_limit(10)

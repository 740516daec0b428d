"""Issue 25, "As a researcher meets it": the box bounds of a normalised
input, the Norm rule on the joins under one rule, pickled networks, data
far outside the model's range."""
import h5py
import numpy as np
import pytest

import lrpnb
from lrpnb.inputs import normalise

MEAN, STD = np.array([0.4, 0.5, 0.6]), np.array([0.2, 0.25, 0.3])


def conv_net(seed=0):
    """6 x 6 x 3 images -> conv 3x3 -> relu -> conv 3x3 -> relu -> flatten -> dense (3 classes)."""
    rng = np.random.default_rng(seed)
    return lrpnb.Network([
        lrpnb.Convolution(rng.normal(size=(3, 3, 3, 4)) / 3, rng.normal(size=4) / 10), lrpnb.Rect(),
        lrpnb.Convolution(rng.normal(size=(3, 3, 4, 5)) / 3, rng.normal(size=5) / 10), lrpnb.Rect(),
        lrpnb.Flatten(), lrpnb.Linear(rng.normal(size=(20, 3)) / 3, rng.normal(size=3) / 10)])


def images(count=5, seed=1):
    """Samples in 0..1 (the input range before normalisation), float32."""
    return np.random.default_rng(seed).uniform(0, 1, size=(count, 6, 6, 3)).astype(np.float32)


# ------------------------------------------------------------ 1. EpsilonGammaBox of a normalised input
def test_epsilon_gamma_box_normalises_its_bounds():
    net = conv_net()
    X = normalise(images(), MEAN, STD)
    low, high = (0 - MEAN) / STD, (1 - MEAN) / STD
    by_hand = net.explain(X, composite=lrpnb.EpsilonGammaBox(low, high))
    normalised = net.explain(X, composite=lrpnb.EpsilonGammaBox(0.0, 1.0, mean=MEAN, std=STD))
    np.testing.assert_array_equal(normalised, by_hand)
    raw = net.explain(X, composite=lrpnb.EpsilonGammaBox(0.0, 1.0))
    assert np.abs(raw - by_hand).max() > 1e-3 * np.abs(by_hand).max()
    # one mean and std for every channel give one bound; without them the bounds are as given
    rule = lrpnb.EpsilonGammaBox(0.0, 1.0, mean=0.5, std=0.5).rules(net.layers)[0]
    assert rule.name == "zb" and np.ravel(rule.param).tolist() == [-1.0, 1.0]
    with pytest.raises(ValueError, match="std must be positive"):
        lrpnb.EpsilonGammaBox(0.0, 1.0, mean=MEAN, std=[0.2, 0.0, 0.3])
    with pytest.raises(ValueError, match="one value or one per channel"):
        lrpnb.EpsilonGammaBox(0.0, 1.0, mean=MEAN, std=[0.2, 0.3])


@pytest.mark.parametrize("channel_order", ["rgb", "bgr"])
def test_explain_dataset_normalises_the_box_bounds(tmp_path, channel_order):
    net, X = conv_net(), images(7)
    data = tmp_path / "data.npy"
    np.save(data, X)
    keywords = dict(composite="EpsilonGammaBox", input_range=(0, 1), verbose=False,
                    channel_order=channel_order)
    lrpnb.explain_dataset(net, data, tmp_path / "out.npy", mean=MEAN, std=STD, **keywords)
    relevance = np.load(tmp_path / "out.npy")
    # the model's input: channels reversed for bgr, then normalised with mean and std in the model's order
    Xn = normalise(X, MEAN, STD, bgr=channel_order == "bgr")
    by_hand = net.explain(Xn, composite=lrpnb.EpsilonGammaBox((0 - MEAN) / STD, (1 - MEAN) / STD))
    np.testing.assert_allclose(relevance, by_hand, rtol=1e-6, atol=1e-7 * np.abs(by_hand).max())
    raw = net.explain(Xn, composite=lrpnb.EpsilonGammaBox(0.0, 1.0))
    assert np.abs(relevance - raw).max() > 1e-3 * np.abs(by_hand).max()


# ------------------------------------------------------------ 2. the joins under one rule
def residual_net(seed=2):
    """conv -> relu -> conv -> relu, + skip (Add) -> average pool 2x2 -> flatten -> dense."""
    rng = np.random.default_rng(seed)
    conv = lambda d, n: lrpnb.Convolution(rng.normal(size=(3, 3, d, n)) / 3, rng.normal(size=n) / 10,  # noqa: E731
                                          padding=1)
    return lrpnb.Network([
        lrpnb.Node("stem", conv(2, 3), "input"), lrpnb.Node("stem_relu", lrpnb.Rect(), "stem"),
        lrpnb.Node("branch", conv(3, 3), "stem_relu"), lrpnb.Node("branch_relu", lrpnb.Rect(), "branch"),
        lrpnb.Node("join", lrpnb.Add(), ["branch_relu", "stem_relu"]),
        lrpnb.Node("pool", lrpnb.AveragePool((2, 2), (2, 2)), "join"),
        lrpnb.Node("flat", lrpnb.Flatten(), "pool"),
        lrpnb.Node("fc", lrpnb.Linear(rng.normal(size=(12, 4)) / 3, rng.normal(size=4) / 10), "flat")])


def per_layer(choose):
    """The composite of ``choose(layer)`` -> (rule, param): what presets set on every node give."""
    return lrpnb.Composite("per layer", lambda k, layer, layers: choose(layer))


JOIN_TYPES = (lrpnb.Add, lrpnb.AveragePool)


def test_one_rule_gives_the_joins_the_norm_rule():
    net = residual_net()
    X = np.random.default_rng(3).normal(size=(3, 4, 4, 2))
    uniform = net.explain(X, rule="epsilon", param=0.5)
    # the same as presets on every node: epsilon 0.5 on the weighted layers, 1e-6 on the joins
    net.set_lrp_parameters("epsilon", 0.5, nodes=["stem", "branch", "fc"])
    net.set_lrp_parameters("epsilon", 1e-6, nodes=["join", "pool"])
    np.testing.assert_array_equal(net.explain(X), uniform)
    assert lrpnb.rules.NORM == ("epsilon", 1e-6)
    expected = net.explain(X, composite=per_layer(
        lambda layer: ("epsilon", 1e-6 if isinstance(layer, JOIN_TYPES) else 0.5)))
    np.testing.assert_array_equal(uniform, expected)
    # the toolbox's API follows the same plan
    Y = net.forward(X)
    R = np.zeros_like(Y)
    rows, best = np.arange(len(X)), Y.argmax(axis=1)
    R[rows, best] = Y[rows, best]
    np.testing.assert_array_equal(net.lrp(R, "epsilon", 0.5), uniform)
    # epsilon 0.5 on the joins too is another map
    everywhere = net.explain(X, composite=per_layer(lambda layer: ("epsilon", 0.5)))
    assert np.abs(everywhere - uniform).max() > 1e-3 * np.abs(uniform).max()


def test_presets_of_the_joins():
    X = np.random.default_rng(4).normal(size=(2, 4, 4, 2))
    net = residual_net()
    # never set: 'simple' on the layers, the Norm rule on the joins
    simple = net.explain(X, composite=per_layer(
        lambda layer: ("epsilon", 1e-6) if isinstance(layer, JOIN_TYPES) else ("simple", None)))
    np.testing.assert_array_equal(net.explain(X), simple)
    # one preset for the whole network is one rule: the joins keep the Norm rule
    net.set_lrp_parameters("epsilon", 0.5)
    np.testing.assert_array_equal(net.explain(X), net.explain(X, rule="epsilon", param=0.5))
    # a preset set on a join (by its node's name, or on the layer) is honoured
    net.set_lrp_parameters("epsilon", 0.5, nodes=["join"])
    on_join = net.explain(X, composite=per_layer(
        lambda layer: ("epsilon", 1e-6) if isinstance(layer, lrpnb.AveragePool) else ("epsilon", 0.5)))
    np.testing.assert_array_equal(net.explain(X), on_join)
    assert np.abs(on_join - net.explain(X, rule="epsilon", param=0.5)).max() > 0
    net.node("pool").layer.set_lrp_parameters("epsilon", 0.5)
    np.testing.assert_array_equal(net.explain(X), net.explain(X, composite=per_layer(lambda layer: ("epsilon", 0.5))))
    # and set again for the whole network, it is not any more
    net.set_lrp_parameters("epsilon", 0.5)
    np.testing.assert_array_equal(net.explain(X), net.explain(X, rule="epsilon", param=0.5))


def test_gradient_methods_and_sum_pools_are_unchanged():
    X = np.random.default_rng(5).normal(size=(2, 4, 4, 2))
    net = residual_net()
    for method in ("gradient", "guided_backprop", "gradient_x_input"):
        everywhere = lrpnb.Composite(method, lambda k, layer, layers, m=method: (m, None), method=method)
        np.testing.assert_array_equal(net.explain(X, rule=method), net.explain(X, composite=everywhere))
    rng = np.random.default_rng(6)
    pooled = lrpnb.Network([lrpnb.Convolution(rng.normal(size=(3, 3, 2, 3)), rng.normal(size=3) / 10, padding=1),
                            lrpnb.Rect(), lrpnb.SumPool((2, 2), (2, 2)), lrpnb.Flatten(),
                            lrpnb.Linear(rng.normal(size=(12, 4)), rng.normal(size=4) / 10)])
    for rule, param in (("epsilon", 0.5), ("simple", None), ("alphabeta", 2.0)):
        np.testing.assert_array_equal(pooled.explain(X, rule=rule, param=param),
                                      pooled.explain(X, composite=per_layer(lambda layer: (rule, param))))


# ------------------------------------------------------------ 3. a Network pickles
def test_a_network_pickles_with_its_weights_graph_and_presets():
    import pickle

    net = residual_net()
    net.set_lrp_parameters("epsilon", 0.5)
    net.set_lrp_parameters("alphabeta", 2.0, nodes=["branch"])
    net.node("join").layer.set_lrp_parameters("epsilon", 0.1)
    X = np.random.default_rng(7).normal(size=(3, 4, 4, 2))
    for dtype in (np.float64, np.float32):  # the device caches of both dtypes exist before pickling
        net.explain(X.astype(dtype))
    net.forward(X)  # the activations lrp() keeps are not pickled
    copy = pickle.loads(pickle.dumps(net))
    assert copy.device == "cpu" and copy.backend is net.backend and copy._activations is None
    assert [node.name for node in copy.nodes] == [node.name for node in net.nodes]
    assert [node.inputs for node in copy.nodes] == [node.inputs for node in net.nodes]
    assert [(layer.preset, layer.lrp_explicit) for layer in copy.layers] == \
        [(layer.preset, layer.lrp_explicit) for layer in net.layers]
    for dtype in (np.float64, np.float32):
        Xd = X.astype(dtype)
        np.testing.assert_array_equal(copy.explain(Xd), net.explain(Xd))
        np.testing.assert_array_equal(copy.explain(Xd, rule="epsilon", param=0.01),
                                      net.explain(Xd, rule="epsilon", param=0.01))
    # an Explanation pickles too
    explanation = net.explain(X, return_scores=True, return_layer_sums=True, layers=["join"])
    back = pickle.loads(pickle.dumps(explanation))
    assert type(back) is type(explanation) and len(back) == len(explanation) == 4
    for name in ("relevance", "scores", "layer_sums"):
        np.testing.assert_array_equal(getattr(back, name), getattr(explanation, name))
    np.testing.assert_array_equal(back.layers["join"], explanation.layers["join"])


def test_a_network_explains_in_a_spawned_process():
    import multiprocessing

    net = residual_net()
    net.set_lrp_parameters("epsilon", 0.5, nodes=["join"])
    X = np.random.default_rng(8).normal(size=(4, 4, 4, 2))
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        relevance = pool.apply(net.explain, (X,), dict(composite=lrpnb.EpsilonPlus()))
        presets = pool.apply(net.explain, (X,))
    np.testing.assert_array_equal(relevance, net.explain(X, composite=lrpnb.EpsilonPlus()))
    np.testing.assert_array_equal(presets, net.explain(X))


def test_composites_pickle():
    import pickle

    net = residual_net()
    for composite in (lrpnb.EpsilonPlus(0.1), lrpnb.EpsilonPlusFlat(), lrpnb.EpsilonGammaBox(0, 1, mean=0.5, std=0.2),
                      lrpnb.formula_type(0), lrpnb.formula_type(104, layer_index=1), lrpnb.formula_type(11)):
        copy = pickle.loads(pickle.dumps(composite))
        assert copy.name == composite.name and copy.method == composite.method
        assert [(rule.name, np.ravel(rule.param).tolist() if rule.param is not None else None)
                for rule in copy.rules(net.layers)] == \
            [(rule.name, np.ravel(rule.param).tolist() if rule.param is not None else None)
             for rule in composite.rules(net.layers)]


# ------------------------------------------------------------ 4. data far outside the model's range
def test_data_far_outside_the_input_range_is_said_once(tmp_path, capsys):
    from lrpnb.digits import synthetic_digits

    images = synthetic_digits(12, seed=3).images  # -1..1, as the embedded LeNet-5 takes
    data = tmp_path / "pixels.npy"
    np.save(data, ((images + 1) * 127.5).astype(np.float32))  # 0..255 as floats
    lrpnb.explain_dataset("lenet5_synthetic", data, tmp_path / "out.npy", batch_size=4, verbose=False)
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "span 0..255" in err and "input range -1..1" in err
    np.save(data, images)
    lrpnb.explain_dataset("lenet5_synthetic", data, tmp_path / "out.npy", batch_size=4, verbose=False,
                          overwrite=True)
    assert "warning" not in capsys.readouterr().err


def test_uint8_images_of_mnist_digits_are_taken_as_rows(tmp_path, capsys):
    pixels = np.random.default_rng(9).integers(0, 256, size=(6, 28, 28, 1)).astype(np.uint8)
    np.save(tmp_path / "images.npy", pixels)
    np.save(tmp_path / "rows.npy", pixels.reshape(6, 784))
    for name in ("images", "rows"):
        lrpnb.explain_dataset("lenet5_synthetic", tmp_path / f"{name}.npy", tmp_path / f"{name}.h5",
                              rule="epsilon", param=0.01, verbose=False)
    err = capsys.readouterr().err
    assert "28 x 28 images are padded to 32 x 32 x 1" in err and "rows of 784 values become" in err
    with h5py.File(tmp_path / "images.h5", "r") as images, h5py.File(tmp_path / "rows.h5", "r") as rows:
        assert images["relevance"].shape == (6, 32, 32, 1)
        for key in ("relevance", "scores", "prediction"):
            np.testing.assert_array_equal(images[key][...], rows[key][...])

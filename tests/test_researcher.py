"""Issue 25, "As a researcher meets it": the box bounds of a normalised
input, the Norm rule on the joins under one rule, pickled networks, data
far outside the model's range."""
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

"""The model zoo's element-wise activations (Clip, HardSigmoid, HardSwish,
SiLU, LeakyReLU, GELU): forward passes against the formulas of
tests/naive.py (and torch's), derivatives against the formulas, central
differences and torch.autograd, relevance passed through unchanged inside a
network under every LRP rule, the parameter checks, and their round trip
through lrpnb's own model format."""
import json
import zipfile

import numpy as np
import pytest

import lrpnb
import naive
from conftest import relative_error
from lrpnb.layers import GELU, Clip, HardSigmoid, HardSwish, LeakyReLU, Linear, SiLU

#: (layer, its name and parameters in tests/naive.py)
CASES = {
    "relu6": (lambda: Clip(0, 6), ("Clip", {"min": 0.0, "max": 6.0})),
    "clip": (lambda: Clip(-1.5, 2.25), ("Clip", {"min": -1.5, "max": 2.25})),
    "hardsigmoid-onnx": (lambda: HardSigmoid(), ("HardSigmoid", {"alpha": 0.2, "beta": 0.5})),
    "hardsigmoid-torch": (lambda: HardSigmoid(1 / 6, 0.5), ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5})),
    "hardsigmoid-negative": (lambda: HardSigmoid(-0.5, 0.25), ("HardSigmoid", {"alpha": -0.5, "beta": 0.25})),
    "hardswish": (lambda: HardSwish(), ("HardSwish", {})),
    "silu": (lambda: SiLU(), ("SiLU", {})),
    "leakyrelu": (lambda: LeakyReLU(0.1), ("LeakyReLU", {"alpha": 0.1})),
    "leakyrelu-steep": (lambda: LeakyReLU(-2.0), ("LeakyReLU", {"alpha": -2.0})),
    "gelu": (lambda: GELU(), ("GELU", {})),
    "gelu-tanh": (lambda: GELU("tanh"), ("GELU", {"approximate": True})),
}
LRP_RULES = [("simple", None), ("epsilon", 0.01), ("alphabeta", 2.0), ("alphabeta", 1.0), ("zplus", None),
             ("flat", None), ("ww", None), ("gamma", 0.25)]
GRADIENT_METHODS = ["gradient", "sensitivity", "deconvnet", "guided_backprop", "gradient_x_input"]
TOLERANCE = {np.float32: 2e-6, np.float64: 1e-13}


def points(dtype):
    """Values across every regime, the kinks of every case among them."""
    kinks = [-6.0, -3.0, -2.5, -1.5, -0.5, 0.0, 1.5, 2.25, 2.5, 3.0, 6.0]
    grid = np.linspace(-9, 9, 73)
    far = [-1e4, -80.0, -30.0, 30.0, 80.0, 1e4]
    values = np.concatenate([kinks, grid, far, np.random.default_rng(0).normal(scale=3, size=42)])
    return values.astype(dtype).reshape(2, 11, 1, 6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_and_derivative_match_the_formulas(case, dtype):
    make, (name, params) = CASES[case]
    layer = make()
    X = points(dtype)
    Y = layer.forward(X)
    assert Y.dtype == dtype and Y.shape == X.shape
    assert relative_error(Y, naive.zoo_activation(name, X, **params)) <= TOLERANCE[dtype]
    G = np.random.default_rng(1).normal(size=X.shape).astype(dtype)
    for method in GRADIENT_METHODS:
        back = layer.relevance(X, Y, G, method)
        assert back.dtype == dtype and back.shape == X.shape
        expected = G * naive.zoo_activation_derivative(name, X, **params)
        assert relative_error(back, expected) <= TOLERANCE[dtype], method
    # every LRP rule passes relevance through unchanged
    for rule, param in LRP_RULES:
        assert layer.relevance(X, Y, G, rule, param) is G


@pytest.mark.parametrize("case", sorted(CASES))
def test_derivative_matches_central_differences(case):
    layer = CASES[case][0]()
    # float64, away from every kink
    X = np.random.default_rng(2).uniform(-7, 7, size=400)
    kinks = [-6, -3, -2.5, -1.5, 0.5, 0, 1.5, 2.25, 2.5, 3, 6]
    X = X[np.abs(X[:, None] - kinks).min(axis=1) > 1e-3].reshape(1, -1)
    h = 1e-6
    slope = (layer.forward(X + h) - layer.forward(X - h)) / (2 * h)
    back = layer.relevance(X, layer.forward(X), np.ones_like(X), "gradient")
    assert np.abs(back - slope).max() <= 1e-7


def test_values_at_the_kinks_are_torchs():
    # written out: clip (hardtanh, ReLU6) 0 at its bounds, hard sigmoid 0 at
    # its kinks, hard swish 0 at -3 and 1 at 3, leaky ReLU alpha at 0
    for dtype in (np.float32, np.float64):
        X = np.array([[-3.0, 0.0, 3.0, 6.0]], dtype=dtype)
        ones = np.ones_like(X)

        def slope(layer):
            return layer.relevance(X, layer.forward(X), ones, "gradient")[0].tolist()

        assert slope(Clip(0, 6)) == [0, 0, 1, 0]
        assert slope(HardSigmoid(1 / 6, 0.5)) == pytest.approx([0, 1 / 6, 0, 0], rel=1e-6)
        assert slope(HardSwish()) == pytest.approx([0, 0.5, 1, 1], rel=1e-7)
        assert slope(LeakyReLU(0.1)) == pytest.approx([0.1, 0.1, 1, 1], rel=1e-7)
        assert slope(Clip(0, 0)) == [0, 0, 0, 0]
        assert HardSwish().forward(X)[0].tolist() == [0, 0, 3, 6]


def test_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    functions = {"relu6": F.relu6, "clip": lambda t: F.hardtanh(t, -1.5, 2.25),
                 "hardsigmoid-torch": F.hardsigmoid, "hardswish": F.hardswish, "silu": F.silu,
                 "leakyrelu": lambda t: F.leaky_relu(t, 0.1), "leakyrelu-steep": lambda t: F.leaky_relu(t, -2.0),
                 "gelu": F.gelu, "gelu-tanh": lambda t: F.gelu(t, approximate="tanh")}
    for dtype, tolerance in ((np.float32, 2e-6), (np.float64, 1e-12)):
        X = points(dtype)
        for case, function in functions.items():
            layer = CASES[case][0]()
            tensor = torch.tensor(X, requires_grad=True)
            output = function(tensor)
            slope, = torch.autograd.grad(output.sum(), tensor)
            assert relative_error(layer.forward(X), output.detach().numpy()) <= tolerance, (case, dtype)
            back = layer.relevance(X, layer.forward(X), np.ones_like(X), "gradient")
            # torch's hardsigmoid slope is 1/6 in float32 whatever the dtype
            slack = 1e-7 if case == "hardsigmoid-torch" else tolerance
            assert relative_error(back, slope.numpy()) <= slack, (case, dtype)
            # the piecewise linear ones exactly, at their kinks too
            exact = np.isin(slope.numpy(), (0.0, 1.0)) & ("gelu" not in case and case != "silu")
            assert np.array_equal(back[exact], slope.numpy()[exact]), (case, dtype)


def two_layer_network(activation, dtype, seed=3):
    rng = np.random.default_rng(seed)
    first = Linear(rng.normal(size=(6, 8)).astype(dtype), np.zeros(8, dtype))
    second = Linear(rng.normal(size=(8, 4)).astype(dtype), np.zeros(4, dtype))
    return lrpnb.Network([first, activation, second]), first, second


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["relu6", "hardswish", "silu", "gelu", "leakyrelu"])
def test_relevance_passes_unchanged_in_a_network(case, dtype):
    activation = CASES[case][0]()
    net, first, second = two_layer_network(activation, dtype)
    X = np.random.default_rng(4).normal(size=(5, 6)).astype(dtype) * 2
    Z1 = first.forward(X)
    A1 = activation.forward(Z1)
    scores = second.forward(A1)
    top = scores.argmax(axis=1)
    R = np.zeros_like(scores)
    R[np.arange(5), top] = scores[np.arange(5), top]
    for rule, param in LRP_RULES:
        relevance, sums = net.explain(X, rule=rule, param=param, return_layer_sums=True)
        # the chain of the two Linear layers alone, the activation's relevance skipped
        expected = first.relevance(X, Z1, second.relevance(A1, scores, R, rule, param), rule, param)
        assert relevance.dtype == dtype
        assert relative_error(relevance, expected) <= TOLERANCE[dtype] * 10, rule
        # the sums at the activation's input and output are one and the same
        assert np.array_equal(sums[:, 1], sums[:, 2]), rule
        if rule in ("simple", "flat", "ww", "gamma") or param == 1.0:
            # no bias and a tiny stabilizer: conservation
            assert np.allclose(sums[:, 0], sums[:, -1], rtol=1e-5), rule


@pytest.mark.parametrize("case", ["relu6", "hardswish", "gelu-tanh", "hardsigmoid-onnx", "leakyrelu-steep"])
def test_gradient_methods_in_a_network(case):
    make, (name, params) = CASES[case]
    net, first, second = two_layer_network(make(), np.float64)
    X = np.random.default_rng(5).normal(size=(3, 6)) * 3
    Z1 = X @ first.W
    target = np.array([0, 2, 3])
    expected = (naive.zoo_activation_derivative(name, Z1, **params) * second.W[:, target].T) @ first.W.T
    gradient = net.explain(X, target=target, rule="gradient")
    assert relative_error(gradient, expected) <= 1e-12
    # zennit modifies ReLUs only: on these activations deconvnet and guided
    # backprop pass the exact derivative too, so here they equal the gradient
    for method in ("deconvnet", "guided_backprop"):
        assert np.array_equal(net.explain(X, target=target, rule=method), gradient), method
    assert np.allclose(net.explain(X, target=target, rule="gradient_x_input"), X * gradient, rtol=1e-13)


def test_parameters_are_checked():
    for make, message in [
            (lambda: Clip(float("nan"), 6), r"Clip: min must be a finite number, got nan"),
            (lambda: Clip(0, np.inf), r"Clip: max must be a finite number, got inf"),
            (lambda: Clip(6, 0), r"Clip: min must be <= max, got min=6 and max=0"),
            (lambda: Clip("0", 6), r"Clip: min must be a finite number, got '0'"),
            (lambda: Clip(np.zeros(2), 6), r"Clip: min must be a finite number"),
            (lambda: HardSigmoid(alpha=None), r"HardSigmoid: alpha must be a finite number, got None"),
            (lambda: HardSigmoid(beta=-np.inf), r"HardSigmoid: beta must be a finite number"),
            (lambda: LeakyReLU(True), r"LeakyReLU: alpha must be a finite number, got True"),
            (lambda: GELU("fast"), r"GELU: approximate must be 'none' or 'tanh'"),
            (lambda: GELU(1), r"GELU: approximate must be 'none' or 'tanh'")]:
        with pytest.raises(ValueError, match=message):
            make()
    # ONNX attributes and initializers come as numpy scalars and 0-d arrays
    clip = Clip(np.float32(0), np.array(6.0))
    assert (clip.min, clip.max) == (0.0, 6.0) and type(clip.min) is float
    assert LeakyReLU(np.array([0.2])).alpha == 0.2
    assert GELU(True).approximate and not GELU("none").approximate and GELU("tanh").approximate


def test_describe_and_markers():
    assert [make().describe() for make, _ in CASES.values()] == [
        "Clip 0 6", "Clip -1.5 2.25", "HardSigmoid 0.2 0.5", "HardSigmoid 0.166667 0.5",
        "HardSigmoid -0.5 0.25", "HardSwish", "SiLU", "LeakyReLU 0.1", "LeakyReLU -2", "GELU", "GELU tanh"]
    assert not any(make().toolbox for make, _ in CASES.values())
    default = Clip()
    assert -default.min == default.max == float(np.finfo(np.float32).max)
    X = np.array([[-1e30, 1e30]], dtype=np.float32)
    assert default.forward(X).tolist() == X.tolist()


def zoo_network(dtype):
    rng = np.random.default_rng(6)
    layers = [Linear(rng.normal(size=(5, 7)).astype(dtype), rng.normal(size=7).astype(dtype))]
    for make, _ in CASES.values():
        # a Linear layer after each, so that no activation meets another's saturated output
        layers += [make(), Linear(rng.normal(size=(7, 7)).astype(dtype), rng.normal(size=7).astype(dtype))]
    layers.append(Linear(rng.normal(size=(7, 3)).astype(dtype), rng.normal(size=3).astype(dtype)))
    return lrpnb.Network(layers)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_model_graph_round_trip(tmp_path, dtype):
    net = zoo_network(dtype)
    net.layers[1].set_lrp_parameters("epsilon", 0.5)
    path = tmp_path / "zoo.lrpnb"
    lrpnb.save(net, path)
    back = lrpnb.load(path)
    assert [(type(a), a.describe()) for a in net.layers] == [(type(b), b.describe()) for b in back.layers]
    assert back.layers[1].lrp_param == 0.5
    for a, b in zip(net.layers[1:-1:2], back.layers[1:-1:2]):
        assert vars(a) == vars(b)
    X = np.random.default_rng(7).normal(size=(4, 5)).astype(dtype) * 3
    assert net.scores(X).tobytes() == back.scores(X).tobytes()
    for rule, param in LRP_RULES[:3] + [("gradient", None)]:
        relevance = net.explain(X, rule=rule, param=param)
        # every sample's relevance gets through (the gradient may be 0 where a clip saturates)
        assert rule == "gradient" or np.abs(relevance).sum(axis=1).min() > 0, rule
        assert relevance.tobytes() == back.explain(X, rule=rule, param=param).tobytes(), rule
    with zipfile.ZipFile(path) as archive:
        nodes = json.loads(archive.read("model.json"))["nodes"][1:-1:2]
    assert [(node["layer"], node["params"]) for node in nodes] == [
        ("Clip", {"min": 0.0, "max": 6.0}), ("Clip", {"min": -1.5, "max": 2.25}),
        ("HardSigmoid", {"alpha": 0.2, "beta": 0.5}), ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}),
        ("HardSigmoid", {"alpha": -0.5, "beta": 0.25}), ("HardSwish", {}), ("SiLU", {}),
        ("LeakyReLU", {"alpha": 0.1}), ("LeakyReLU", {"alpha": -2.0}), ("GELU", {"approximate": False}),
        ("GELU", {"approximate": True})]


def test_model_graph_refuses_bad_parameters(tmp_path):
    path = tmp_path / "zoo.lrpnb"
    lrpnb.save(lrpnb.Network([Clip(0, 6), GELU()]), path)
    with zipfile.ZipFile(path) as archive:
        description = json.loads(archive.read("model.json"))
    for node, params, message in [(0, {"min": 6.0, "max": 0.0}, r"Clip: min must be <= max"),
                                  (0, {"min": 0.0}, r"Clip takes the parameters \['max', 'min'\]"),
                                  (1, {"approximate": "tanh"}, r"must be true or false, got 'tanh'")]:
        broken = json.loads(json.dumps(description))
        broken["nodes"][node]["params"] = params
        hostile = tmp_path / "hostile.lrpnb"
        with zipfile.ZipFile(hostile, "w") as archive:
            archive.writestr("model.json", json.dumps(broken))
        with pytest.raises(ValueError, match=message) as error:
            lrpnb.load(hostile)
        assert "hostile.lrpnb" in str(error.value) and broken["nodes"][node]["name"] in str(error.value)

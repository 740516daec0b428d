"""MatMul (of two activations) and AttentionSoftmax: forward passes, the
uniform and constant-gate rules, the softmax rule and the gradients against
tests/naive.py and finite differences, conservation, the 'uniform' rule's
epsilon, argument errors, and the lrpnb format's round trip."""
import numpy as np
import pytest

import lrpnb
import naive
from lrpnb.layers import AttentionSoftmax, Mul, MatMul
from lrpnb.network import Node
from lrpnb.rules import Rule, takes_parameter

TOLERANCE = {np.float64: 1e-12, np.float32: 1e-4}
#: (a's shape, b's shape): heads (N, h, T, d) @ (N, h, d, S), and one batch axis only
SHAPES = [((2, 3, 4, 5), (2, 3, 5, 6)), ((3, 4, 2), (3, 2, 5))]


def close(actual, expected, dtype):
    assert actual.dtype == dtype and actual.shape == expected.shape
    scale = max(np.abs(expected).max(), 1e-300)
    assert np.abs(actual.astype(np.float64) - expected).max() / scale <= TOLERANCE[dtype]


def factors(shapes, dtype, seed=0):
    """a and b of ``shapes``: normal values in float64; in float32 values in
    [0.5, 1.5), whose products stay away from 0 (a float32 product near 0
    divides its rounding error into the ratios)."""
    rng = np.random.default_rng(seed)
    if dtype == np.float64:
        return [rng.normal(size=shape) for shape in shapes]
    return [(rng.random(shape) + 0.5).astype(dtype) for shape in shapes]


# ---------------------------------------------------------------- MatMul
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shapes", SHAPES)
def test_matmul_forward_matches_the_reference(shapes, dtype):
    a, b = factors(shapes, dtype)
    Y = MatMul().forward([a, b])
    close(Y, naive.matmul_forward(a.astype(np.float64), b.astype(np.float64)), dtype)
    assert MatMul().output_shape(shapes) == Y.shape


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shapes", SHAPES)
def test_matmul_uniform_rule_on_both_factors(shapes, dtype):
    a, b = factors(shapes, dtype)
    layer = MatMul()
    Y = layer.forward([a, b])
    R = np.random.default_rng(1).normal(size=Y.shape).astype(dtype)
    a64, b64, R64 = a.astype(np.float64), b.astype(np.float64), R.astype(np.float64)
    # without a gate every LRP rule is the uniform rule, with the rule's stabilizer
    for rule, param, eps in (("uniform", None, 1e-6), ("uniform", 1e-9, 1e-9), ("uniform", 0.5, 0.5),
                             ("epsilon", 0.1, 0.1), ("simple", None, 1e-16), ("constant_gate", None, 1e-6),
                             ("alphabeta", 2.0, 1e-6)):
        Ra, Rb = layer.relevance([a, b], Y, R, Rule(rule, param))
        expected_a, expected_b = naive.matmul_lrp(a64, b64, R64, eps, 0.5, 0.5)
        close(Ra, expected_a, dtype)
        close(Rb, expected_b, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("gate", [0, 1])
def test_matmul_constant_gate_gives_all_to_the_other_factor(gate, dtype):
    shapes = SHAPES[0]
    a, b = factors(shapes, dtype, seed=2)
    layer = MatMul(gate=gate)
    Y = layer.forward([a, b])
    R = np.random.default_rng(3).normal(size=Y.shape).astype(dtype)
    a64, b64, R64 = a.astype(np.float64), b.astype(np.float64), R.astype(np.float64)
    shares = (0.0, 1.0) if gate == 0 else (1.0, 0.0)
    for rule, param, eps in (("constant_gate", None, 1e-6), ("epsilon", 0.25, 0.25), ("simple", None, 1e-16),
                             ("zplus", None, 1e-6)):
        parts = layer.relevance([a, b], Y, R, Rule(rule, param))
        expected = naive.matmul_lrp(a64, b64, R64, eps, *shares)
        close(parts[1 - gate], expected[1 - gate], dtype)
        np.testing.assert_array_equal(parts[gate], np.zeros(shapes[gate], dtype))
    # the uniform rule, asked by name, splits even with a gate
    Ra, Rb = layer.relevance([a, b], Y, R, Rule("uniform", 1e-3))
    expected_a, expected_b = naive.matmul_lrp(a64, b64, R64, 1e-3, 0.5, 0.5)
    close(Ra, expected_a, dtype)
    close(Rb, expected_b, dtype)


def test_matmul_uniform_rule_conserves_up_to_the_stabilizer():
    a, b = factors(SHAPES[0], np.float64, seed=4)
    layer = MatMul()
    Y = layer.forward([a, b])
    R = np.random.default_rng(5).normal(size=Y.shape)
    for eps in (1e-9, 1e-2):
        Ra, Rb = layer.relevance([a, b], Y, R, Rule("uniform", eps))
        absorbed = R * Y / (Y + eps * np.where(Y >= 0, 1.0, -1.0))  # what reaches the factors
        total = Ra.sum(axis=(1, 2, 3)) + Rb.sum(axis=(1, 2, 3))
        np.testing.assert_allclose(total, absorbed.sum(axis=(1, 2, 3)), rtol=1e-12)
        # each factor half of it
        np.testing.assert_allclose(Ra.sum(axis=(1, 2, 3)), absorbed.sum(axis=(1, 2, 3)) / 2, rtol=1e-12)
    # with a tiny stabilizer the relevance of the output itself
    Ra, Rb = layer.relevance([a, b], Y, R, Rule("uniform", 1e-12))
    np.testing.assert_allclose(Ra.sum(axis=(1, 2, 3)) + Rb.sum(axis=(1, 2, 3)), R.sum(axis=(1, 2, 3)), rtol=1e-6)


def test_matmul_gradient_matches_the_product_rule_and_finite_differences():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(2, 2, 3, 4)), rng.normal(size=(2, 2, 4, 2))
    layer = MatMul(gate=0)  # the gate changes no gradient
    Y = layer.forward([a, b])
    G = rng.normal(size=Y.shape)
    Ga, Gb = layer.relevance([a, b], Y, G, "gradient")
    expected_a, expected_b = naive.matmul_gradient(a, b, G)
    close(Ga, expected_a, np.float64)
    close(Gb, expected_b, np.float64)
    h = 1e-6

    def loss(x, y):
        return (G * naive.matmul_forward(x, y)).sum()

    for index in [(0, 0, 0, 0), (1, 1, 2, 3), (0, 1, 1, 2)]:
        step = np.zeros(a.shape)
        step[index] = h
        assert abs((loss(a + step, b) - loss(a - step, b)) / (2 * h) - Ga[index]) < 1e-8
    for index in [(0, 0, 0, 0), (1, 1, 3, 1), (1, 0, 2, 1)]:
        step = np.zeros(b.shape)
        step[index] = h
        assert abs((loss(a, b + step) - loss(a, b - step)) / (2 * h) - Gb[index]) < 1e-8
    # gradient x input on a product: each factor's share is the whole output's G y
    Ga, Gb = MatMul().relevance([a, b], Y, G, "gradient_x_input")
    np.testing.assert_allclose((a * Ga).sum(axis=(1, 2, 3)), (G * Y).sum(axis=(1, 2, 3)), rtol=1e-12)


def test_matmul_checks_its_inputs_and_arguments():
    for gate in (2, -1, True, 0.5, "0"):
        with pytest.raises(ValueError, match=r"MatMul: gate must be None, 0 or 1"):
            MatMul(gate)
    with pytest.raises(ValueError, match=r"expects a \(N, \.\.\., T, K\) and b \(N, \.\.\., K, S\) with the same "
                                         r"leading axes, got a \(N, 3, 4, 5\) and b \(N, 3, 4, 6\); b must be "
                                         r"\(N, 3, 5, S\)"):
        MatMul().output_shape([(2, 3, 4, 5), (2, 3, 4, 6)])
    with pytest.raises(ValueError, match=r"got a \(N, 3, 4, 5\) and b \(N, 2, 5, 6\); b must be \(N, 3, 5, S\)"):
        MatMul().forward([np.ones((2, 3, 4, 5)), np.ones((2, 2, 5, 6))])
    with pytest.raises(ValueError, match=r"got a \(N, 4\) and b \(N, 4\)$"):
        MatMul().output_shape([(2, 4), (2, 4)])
    with pytest.raises(ValueError, match="expects two inputs"):
        MatMul().output_shape([(2, 3, 4)] * 3)
    with pytest.raises(ValueError, match="MatMul: both factors must have one dtype, got float64 and float32"):
        MatMul().forward([np.ones((2, 3, 4)), np.ones((2, 4, 5), np.float32)])
    assert MatMul().describe() == "MatMul" and MatMul(0).describe() == "MatMul gate=0"


# ---------------------------------------------------------------- AttentionSoftmax
def masked_scores(dtype, seed=7):
    X = np.random.default_rng(seed).normal(size=(2, 3, 4, 5)) * 2
    X[0, 1, 2, [1, 3]] = -np.inf  # an additive -inf mask
    X[1, 0, 0, 4] = -np.inf
    return X.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_attention_softmax_forward_and_rule_match_the_reference(dtype):
    X = masked_scores(dtype)
    layer = AttentionSoftmax()
    S = layer.forward(X)
    close(S, naive.attention_softmax(X.astype(np.float64)), dtype)
    assert np.all(S[0, 1, 2, [1, 3]] == 0)
    np.testing.assert_allclose(S.sum(axis=-1), 1, rtol=1e-6)
    R = np.random.default_rng(8).normal(size=S.shape).astype(dtype)
    for rule, param in (("epsilon", 0.1), ("uniform", None), ("simple", None), ("constant_gate", None)):
        Rx = layer.relevance(X, S, R, Rule(rule, param))
        close(Rx, naive.attention_softmax_lrp(X.astype(np.float64), R.astype(np.float64)), dtype)
        assert np.all(Rx[0, 1, 2, [1, 3]] == 0) and np.isfinite(Rx).all()


def test_attention_softmax_rule_is_x_times_the_gradient_of_the_output_relevance():
    # LXT's Gradient x Input: with R = s g, the rule gives x * (the gradient of s . g)
    X = masked_scores(np.float64)[1:, :, 1:]
    X = np.where(np.isfinite(X), X, 0.0)
    layer = AttentionSoftmax()
    S = layer.forward(X)
    g = np.random.default_rng(9).normal(size=S.shape)
    np.testing.assert_allclose(layer.relevance(X, S, S * g, "epsilon", 0.1),
                               X * layer.relevance(X, S, g, "gradient"), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_attention_softmax_gradient_matches_the_jacobian_and_finite_differences(dtype):
    X = masked_scores(dtype, seed=10)
    X = np.where(np.isfinite(X), X, -30).astype(dtype)
    layer = AttentionSoftmax()
    S = layer.forward(X)
    G = np.random.default_rng(11).normal(size=S.shape).astype(dtype)
    actual = layer.relevance(X, S, G, "gradient")
    close(actual, naive.attention_softmax_gradient(X.astype(np.float64), G.astype(np.float64)), dtype)
    if dtype == np.float64:
        h = 1e-6
        for index in [(0, 0, 0, 0), (1, 2, 3, 4), (0, 1, 2, 1)]:
            step = np.zeros(X.shape)
            step[index] = h
            difference = ((G * naive.attention_softmax(X + step)).sum()
                          - (G * naive.attention_softmax(X - step)).sum()) / (2 * h)
            assert abs(difference - actual[index]) < 1e-8


def test_attention_softmax_checks_its_input():
    with pytest.raises(ValueError, match=r"expects scores \(N, \.\.\., S\) with S >= 1, got \(N\)"):
        AttentionSoftmax().output_shape((3,))
    assert AttentionSoftmax().output_shape((2, 3, 4)) == (2, 3, 4)


# ---------------------------------------------------------------- the 'uniform' rule's epsilon
def test_uniform_rule_takes_an_optional_epsilon():
    assert takes_parameter("uniform") and Rule("uniform").param is None
    assert Rule("uniform").epsilon() == 1e-6 and Rule("uniform", 1e-10).epsilon() == 1e-10
    assert Rule("uniform", 2).param == 2.0
    for bad, message in ((0, "must be > 0"), (-1e-3, "must be > 0"), (np.nan, "must be finite"),
                         ("x", "must be a number")):
        with pytest.raises(ValueError, match=f"the 'uniform' rule.*{message}"):
            Rule("uniform", bad)
    with pytest.raises(ValueError, match=r"the 'uniform' rule's epsilon \(1e-50\) is 0 in float32"):
        Rule("uniform", 1e-50).check_dtype(np.float32)
    Rule("uniform", 1e-50).check_dtype(np.float64)


def test_mul_keeps_its_uniform_rule_whatever_the_epsilon():
    rng = np.random.default_rng(12)
    x, g = rng.normal(size=(2, 3, 3, 4)), rng.random((2, 1, 1, 4))
    layer = Mul()
    Y = layer.forward([x, g])
    R = rng.normal(size=Y.shape)
    plain = layer.relevance([x, g], Y, R, Rule("uniform"))
    for part, other in zip(plain, layer.relevance([x, g], Y, R, Rule("uniform", 0.5))):
        np.testing.assert_array_equal(part, other)
    np.testing.assert_array_equal(plain[0], R / 2)


# ---------------------------------------------------------------- in a network
def attention_net(dtype=np.float64):
    """Self-attention of an input (N, 4, 4) with itself: softmax(x x) x, then a dense head."""
    rng = np.random.default_rng(13)
    return lrpnb.Network([
        Node("scores", MatMul(), ["input", "input"]),
        Node("probs", AttentionSoftmax(), "scores"),
        Node("context", MatMul(gate=0), ["probs", "input"]),
        Node("flat", lrpnb.Flatten(), "context"),
        Node("fc", lrpnb.Linear(rng.normal(size=(16, 3)).astype(dtype), rng.normal(size=3).astype(dtype)),
             "flat")])


def test_attention_network_explains_and_round_trips(tmp_path):
    net = attention_net()
    net.set_lrp_parameters("uniform", 1e-9, nodes=["scores", "context"])
    X = np.random.default_rng(14).normal(size=(2, 4, 4))
    assert net.forward(X).shape == (2, 3)
    R = net.explain(X, rule="epsilon", param=1e-9)
    assert R.shape == X.shape and np.isfinite(R).all()
    path = tmp_path / "attention.lrpnb"
    lrpnb.save(net, path)
    back = lrpnb.load(path)
    assert [n.layer.describe() for n in back.nodes][:3] == ["MatMul", "AttentionSoftmax", "MatMul gate=0"]
    assert back.node("context").layer.gate == 0 and back.node("scores").layer.gate is None
    assert back.node("scores").layer.preset == Rule("uniform", 1e-9)
    assert back.forward(X).tobytes() == net.forward(X).tobytes()
    for rule, param in ((None, None), ("epsilon", 0.01), ("constant_gate", None), ("gradient", None)):
        assert back.explain(X, rule=rule, param=param).tobytes() == net.explain(X, rule=rule, param=param).tobytes()

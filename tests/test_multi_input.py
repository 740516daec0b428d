"""Networks of several inputs: dicts in and out, explained inputs, integer
(token) inputs cast to a dtype, language-model outputs (N, T, V) explained
at a position, and the errors that name inputs and shapes."""
import pickle

import numpy as np
import pytest

from lrpnb import Add, Linear, Network, Node, Tanh

EPS = 0.01


def _weights(seed, m, n, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(m, n)).astype(dtype), rng.normal(size=n).astype(dtype)


def two_input_net(dtype=np.float64, explained=None):
    """x (N, 4) -> a = Linear; mask (N, 3) -> m = Linear; s = a + m; out = Linear(s) (N, 2)."""
    layers = {"a": Linear(*_weights(1, 4, 3, dtype)), "m": Linear(*_weights(2, 3, 3, dtype)),
              "out": Linear(*_weights(3, 3, 2, dtype))}
    nodes = [Node("a", layers["a"], "x"), Node("m", layers["m"], "mask"), Node("s", Add(), ["a", "m"]),
             Node("out", layers["out"], "s")]
    return Network(nodes, inputs=["x", "mask"], explained=explained)


def _eps_dense(x, W, b, R, eps):
    """The epsilon rule through y = x W + b: x_i sum_j W_ij R_j / (y_j + eps sgn y_j)."""
    y = x @ W + b
    return x * ((R / (y + eps * np.where(y >= 0, 1.0, -1.0))) @ W.T)


def _hand(net, X, target, explained):
    """forward and the relevance of epsilon 0.01 (Add: 1e-6, the Norm rule under one rule) by hand."""
    (Wa, ba), (Wm, bm), (Wo, bo) = [(node.layer.W, node.layer.B) for node in (net.node(k) for k in "a m out".split())]
    a, m = X["x"] @ Wa + ba, X["mask"] @ Wm + bm
    s = a + m
    out = s @ Wo + bo
    R = np.zeros_like(out)
    rows = np.arange(len(out))
    R[rows, target] = out[rows, target]
    R_s = _eps_dense(s, Wo, bo, R, EPS)
    share = R_s / (s + 1e-6 * np.where(s >= 0, 1.0, -1.0))
    relevance = {"x": _eps_dense(X["x"], Wa, ba, a * share, EPS),
                 "mask": _eps_dense(X["mask"], Wm, bm, m * share, EPS)}
    return out, {name: relevance[name] for name in explained}


@pytest.fixture
def batch():
    rng = np.random.default_rng(7)
    return {"x": rng.normal(size=(5, 4)), "mask": rng.normal(size=(5, 3))}


def test_forward_of_a_dict_is_the_hand_computation(batch):
    net = two_input_net()
    expected, _ = _hand(net, batch, np.zeros(5, int), ["x"])
    np.testing.assert_allclose(net.forward(batch), expected, rtol=1e-13)
    np.testing.assert_allclose(net.scores(batch), expected, rtol=1e-13)
    assert net.inputs == ("x", "mask") and net.explained == ("x", "mask")
    assert net.input_shapes == {"x": None, "mask": None} and net.input_shape is None
    assert repr(net).startswith("Network(4 layers, cpu, inputs x, mask)\n  0: a = Linear 4 3 <- x")


@pytest.mark.parametrize("explained", [["x"], ["mask"], ["x", "mask"]])
def test_explain_gives_the_explained_inputs_relevance(batch, explained):
    net = two_input_net(explained=explained)
    target = np.array([0, 1, 1, 0, 1])
    _, expected = _hand(net, batch, target, explained)
    relevance = net.explain(batch, target=target, rule="epsilon", param=EPS)
    assert isinstance(relevance, dict) and sorted(relevance) == sorted(explained)
    for name in explained:
        np.testing.assert_allclose(relevance[name], expected[name], rtol=1e-10, atol=1e-14)
    # lrp() after forward() answers the same way
    out = net.forward(batch)
    start = np.zeros_like(out)
    start[np.arange(5), target] = out[np.arange(5), target]
    again = net.lrp(start, "epsilon", EPS)
    for name in explained:
        np.testing.assert_allclose(again[name], expected[name], rtol=1e-10, atol=1e-14)


def test_nodes_of_unexplained_inputs_get_no_relevance_pass(batch):
    net = two_input_net(explained="x")
    assert net.relevant_values == [True, False, True, False, True, True]  # x, mask, a, m, s, out

    def refuse(*args, **kwargs):
        raise AssertionError("node 'm' depends on no explained input and must get no relevance pass")

    net.node("m").layer.relevance = refuse
    result = net.explain(batch, rule="epsilon", param=EPS, layers=["m", "a"], return_layer_sums=True)
    np.testing.assert_array_equal(result.layers["m"], np.zeros((5, 3)))
    assert np.abs(result.layers["a"]).sum() > 0
    # column 0 is the sum of x's relevance, column 1 of a's output, column 2 of m's (none)
    np.testing.assert_allclose(result.layer_sums[:, 0], result.relevance["x"].sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(result.layer_sums[:, 1], result.layers["a"].sum(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(result.layer_sums[:, 2], 0)
    # setting explained recomputes which values carry relevance
    net.explained = ["x", "mask"]
    assert net.relevant_values == [True] * 6


def test_one_input_networks_answer_as_asked():
    W, b = _weights(4, 3, 2)
    net = Network([Linear(W, b)])
    X = np.random.default_rng(0).normal(size=(4, 3))
    relevance = net.explain(X, rule="epsilon", param=EPS)
    named = net.explain({"input": X}, rule="epsilon", param=EPS)
    assert isinstance(relevance, np.ndarray) and set(named) == {"input"}
    np.testing.assert_array_equal(named["input"], relevance)
    renamed = Network([Linear(W, b)], inputs="pixels")
    np.testing.assert_array_equal(renamed.explain({"pixels": X}, rule="epsilon", param=EPS)["pixels"], relevance)
    np.testing.assert_array_equal(renamed.explain(X, rule="epsilon", param=EPS), relevance)


@pytest.mark.parametrize("weights", [np.float32, np.float64])
def test_integer_inputs_take_the_dtype_asked(weights):
    net = two_input_net(dtype=weights)
    assert net.dtype == weights
    rng = np.random.default_rng(3)
    ids = {"x": rng.integers(0, 5, size=(3, 4)), "mask": rng.integers(0, 2, size=(3, 3)).astype(np.int32)}
    floats = {name: value.astype(np.float64) for name, value in ids.items()}
    assert net.forward(ids).dtype == weights  # default: the weights' dtype
    for dtype in (np.float32, np.float64):
        out = net.forward(ids, dtype=dtype)
        relevance = net.explain(ids, dtype=dtype, rule="epsilon", param=EPS)
        assert out.dtype == dtype and all(value.dtype == dtype for value in relevance.values())
        expected = net.explain(floats, rule="epsilon", param=EPS)
        for name in ids:
            np.testing.assert_allclose(relevance[name], expected[name], rtol=1e-4 if dtype == np.float32 else 1e-9,
                                       atol=1e-5 if dtype == np.float32 else 1e-12)
    # a constant folded in float64 (a mask) does not decide a float32 model's dtype: most of its values do
    from lrpnb import Bias
    folded = Network([Node("a", net.node("a").layer, "x"), Node("b", Bias(np.zeros(3)), "a")], inputs="x")
    assert folded.dtype == weights
    # integers beside a float input take the float input's dtype
    mixed = {"x": floats["x"].astype(np.float32), "mask": ids["mask"]}
    assert net.forward(mixed).dtype == np.float32


def test_language_model_outputs_are_explained_at_a_position():
    # x (N, T, V) and a second input added, then tanh: logits (N, T, V)
    nodes = [Node("s", Add(), ["x", "bias"]), Node("logits", Tanh(), "s")]
    net = Network(nodes, inputs=["x", "bias"], explained="x")
    rng = np.random.default_rng(5)
    X = {"x": rng.normal(size=(2, 4, 6)), "bias": rng.normal(size=(2, 4, 6))}
    logits = np.tanh(X["x"] + X["bias"])
    np.testing.assert_allclose(net.forward(X), logits, rtol=1e-14)
    np.testing.assert_allclose(net.forward(X, position=1), logits[:, 1], rtol=1e-14)
    np.testing.assert_allclose(net.scores(X, position=-1), logits[:, -1], rtol=1e-14)
    for position, row in ((None, 3), (1, 1), (-2, 2)):
        relevance, scores = net.explain(X, target=np.array([2, 5]), rule="epsilon", param=EPS,
                                        position=position, return_scores=True)
        np.testing.assert_allclose(scores, logits[:, row], rtol=1e-14)
        # tanh passes relevance on; the Add (the Norm rule) gives x its share x / (s + 1e-6)
        expected = np.zeros_like(logits)
        for n, c in enumerate((2, 5)):
            s = X["x"][n, row, c] + X["bias"][n, row, c]
            expected[n, row, c] = X["x"][n, row, c] * logits[n, row, c] / (s + 1e-6 * np.sign(s))
        np.testing.assert_allclose(relevance["x"], expected, rtol=1e-10, atol=1e-15)
    with pytest.raises(ValueError, match=r"position must be a token index -4\.\.3 .* got 4"):
        net.explain(X, position=4)


def test_position_on_class_scores_is_an_error(batch):
    with pytest.raises(ValueError, match=r"position=0 names a token of a language model's logits .* \(5, 2\)"):
        two_input_net().explain(batch, position=0)
    with pytest.raises(ValueError, match=r"position=-1 names a token"):
        two_input_net().forward(batch, position=-1)


def test_input_errors_name_the_inputs(batch):
    net = two_input_net()
    with pytest.raises(ValueError, match=r"^X: the input 'mask' is missing; the network takes 'x' \(N, \.\.\.\), "
                                         r"'mask' \(N, \.\.\.\)"):
        net.explain({"x": batch["x"]})
    net.input_shapes = {"x": (4,), "mask": (3,)}
    with pytest.raises(ValueError, match=r"^X: the network has no input named 'masks'; its inputs: 'x' \(N, 4\), "
                                         r"'mask' \(N, 3\)"):
        net.forward({"x": batch["x"], "masks": batch["mask"]})
    with pytest.raises(ValueError, match=r"^X: the network has 2 inputs; give a dict name -> array"):
        net.forward(batch["x"])
    with pytest.raises(ValueError, match=r"^X: inputs of shapes 'x' \(5, 5\), 'mask' \(5, 3\) do not fit the "
                                         r"network, which expects 'x' \(N, 4\), 'mask' \(N, 3\)"):
        net.forward({"x": np.zeros((5, 5)), "mask": batch["mask"]})
    with pytest.raises(ValueError, match=r"different numbers of samples \('x' 5, 'mask' 2\)"):
        net.forward({"x": batch["x"], "mask": batch["mask"][:2]})
    with pytest.raises(ValueError, match=r"different dtypes \('x' float32, 'mask' float64\)"):
        net.forward({"x": batch["x"].astype(np.float32), "mask": batch["mask"]})
    with pytest.raises(ValueError, match=r"X\['mask'\] contains NaN"):
        net.forward({"x": batch["x"], "mask": np.full((5, 3), np.nan)})
    with pytest.raises(ValueError, match=r"dtype must be np.float32 or np.float64, got <class 'numpy.int32'>"):
        net.forward(batch, dtype=np.int32)
    with pytest.raises(ValueError, match=r"^explained: 'y' is not an input of the network; its inputs: 'x', 'mask'"):
        two_input_net(explained=["y"])


def test_graph_errors_name_the_inputs():
    W, b = _weights(4, 3, 2)
    with pytest.raises(ValueError, match=r"node 'a' reads 'y', which no earlier node outputs and no input is "
                                         r"named .*the inputs: 'x'"):
        Network([Node("a", Linear(W, b), "y")], inputs="x")
    with pytest.raises(ValueError, match=r"node 0: the name 'x' is an input's name"):
        Network([Node("x", Linear(W, b), "x")], inputs="x")
    with pytest.raises(ValueError, match=r"a chain of layers reads one input, not 2"):
        Network([Linear(W, b)], inputs=["x", "y"])
    with pytest.raises(ValueError, match=r"inputs must be one or more distinct non-empty names"):
        Network([Node("a", Linear(W, b), "x")], inputs=["x", "x"])
    with pytest.raises(KeyError, match="no node named 'x'"):
        Network([Node("a", Linear(W, b), "x")], inputs="x").node("x")


def test_a_network_of_several_inputs_pickles(batch):
    net = two_input_net(explained="x")
    net.input_shapes = {"x": (4,), "mask": (3,)}
    again = pickle.loads(pickle.dumps(net))
    assert again.inputs == ("x", "mask") and again.explained == ("x",)
    assert again.input_shapes == {"x": (4,), "mask": (3,)}
    np.testing.assert_array_equal(again.explain(batch)["x"], net.explain(batch)["x"])


# ---------------------------------------------------------------- transformer composites

def attention_net():
    """x (N, T, K) attends to itself: scores = x x^T (a MatMul without a gate), A = softmax(scores),
    context = A x (a MatMul whose gate, the attention weights, is its first factor): logits (N, T, K)."""
    from lrpnb import AttentionSoftmax, MatMul, Rearrange
    T, K = 3, 4
    transpose = np.arange(T * K).reshape(T, K).T.ravel()
    nodes = [Node("kt", Rearrange(transpose, (K, T)), "x"), Node("scores", MatMul(), ["x", "kt"]),
             Node("attn", AttentionSoftmax(), "scores"), Node("context", MatMul(gate=0), ["attn", "x"])]
    return Network(nodes, inputs="x")


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _matmul_shares(a, b, R, eps, half):
    """(R_a, R_b) of y = a @ b: each factor's epsilon-rule share, a half each (uniform) or all."""
    y = a @ b
    Q = R / ((2 if half else 1) * (y + eps * np.where(y >= 0, 1.0, -1.0)))
    return a * (Q @ np.swapaxes(b, -1, -2)), b * (np.swapaxes(a, -1, -2) @ Q)


@pytest.mark.parametrize("name", ["AttnLRP", "CPLRP"])
def test_transformer_composites_on_an_attention_head(name):
    import lrpnb
    net = attention_net()
    x = np.random.default_rng(11).normal(size=(2, 3, 4))
    eps = 1e-10
    A = _softmax(x @ np.swapaxes(x, 1, 2))
    context = A @ x
    start = np.zeros_like(context)
    target = np.array([1, 3])
    start[[0, 1], 1, target] = context[[0, 1], 1, target]
    relevance = net.explain(x, target=target, position=1, composite=getattr(lrpnb, name)(eps))
    if name == "CPLRP":  # the attention weights held constant: all to the values, none through the softmax
        _, expected = _matmul_shares(A, x, start, eps, half=False)
    else:  # AttnLRP: each factor half; the softmax rule; query and key halves of the scores
        R_attn, R_value = _matmul_shares(A, x, start, eps, half=True)
        scores = x @ np.swapaxes(x, 1, 2)
        R_scores = scores * (R_attn - A * R_attn.sum(axis=-1, keepdims=True))
        R_query, R_key = _matmul_shares(x, np.swapaxes(x, 1, 2), R_scores, eps, half=True)
        expected = R_value + R_query + np.swapaxes(R_key, 1, 2)
    np.testing.assert_allclose(relevance, expected, rtol=1e-9, atol=1e-14)


def test_transformer_composites_choose_by_layer_class():
    import lrpnb
    from lrpnb import GELU, AttentionSoftmax, Bias, LayerNorm, MatMul, Mul, RMSNorm, Scale
    layers = [Linear(*_weights(0, 2, 2)), MatMul(), MatMul(gate=0), Mul(), AttentionSoftmax(), Add(),
              Bias(np.ones(2)), LayerNorm(np.ones(2), np.zeros(2)), RMSNorm(np.ones(2)), Scale(0.5), GELU(), Tanh()]
    attn = [(rule.name, rule.param) for rule in lrpnb.AttnLRP(1e-9).rules(layers)]
    assert attn[:4] == [("epsilon", 1e-9), ("uniform", 1e-9), ("uniform", 1e-9), ("uniform", 1e-9)]
    assert attn[4:] == [("epsilon", 1e-9)] * 8
    cp = [(rule.name, rule.param) for rule in lrpnb.CPLRP().rules(layers)]
    assert cp[:4] == [("epsilon", 1e-10), ("epsilon", 1e-10), ("epsilon", 1e-10), ("constant_gate", None)]
    assert cp[4:] == [("epsilon", 1e-10)] * 8
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        lrpnb.AttnLRP(0)


def test_token_relevance_of_an_embedding_conserves_the_logit():
    import lrpnb
    from lrpnb import Embedding
    rng = np.random.default_rng(2)
    net = Network([Node("embed", Embedding(rng.normal(size=(7, 4))), "input_ids"),
                   Node("lm", Linear(rng.normal(size=(4, 7)), np.zeros(7)), "embed")], inputs="input_ids")
    ids = rng.integers(0, 7, size=(2, 5))
    for dtype in (np.float32, np.float64):
        result = net.explain({"input_ids": ids}, dtype=dtype, composite=lrpnb.AttnLRP(), return_scores=True)
        tokens = result.relevance["input_ids"]
        assert tokens.shape == (2, 5) and tokens.dtype == dtype
        logit = result.scores.max(axis=1).astype(np.float64)
        # the dense layer's epsilon (1e-10) absorbs logit * 1e-10 / (logit + 1e-10)
        np.testing.assert_allclose(tokens.sum(axis=1), logit * logit / (logit + 1e-10),
                                   rtol=1e-5 if dtype == np.float32 else 1e-13)
        assert np.all(tokens[:, :-1] == 0)  # a token-wise dense layer: only the last position's token counts


def test_gradient_methods_over_several_inputs(batch):
    net = two_input_net(explained="x")
    Wa, Wo = net.node("a").layer.W, net.node("out").layer.W
    target = np.array([0, 1, 1, 0, 1])
    gradient = Wa @ Wo[:, target]  # the network is linear: d out[target] / dx
    np.testing.assert_allclose(net.explain(batch, target=target, rule="gradient")["x"], gradient.T, rtol=1e-12)
    np.testing.assert_allclose(net.explain(batch, target=target, rule="gradient_x_input")["x"],
                               batch["x"] * gradient.T, rtol=1e-12)

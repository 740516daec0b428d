"""Token tensors (Embedding, Rearrange, Reshape, Bias), RMSNorm, Linear on
(N, T, m) and Scale by a constant table: forward passes and every rule
against tests/naive.py, the gradients against finite differences, the
checks of ids and arguments, and the lrpnb format's round trip."""
import numpy as np
import pytest

import lrpnb
from conftest import close, normal
import naive
from lrpnb.layers import Bias, Embedding, Linear, Rearrange, Reshape, RMSNorm, Scale
from lrpnb.network import Network, Node
from lrpnb.rules import Rule

LRP_RULES = [("simple", None), ("epsilon", 0.1), ("alphabeta", 2.0), ("alphabeta", 1.0), ("zplus", None),
             ("gamma", 0.25), ("zb", (-3.0, 2.5)), ("flat", None), ("ww", None)]
GRADIENTS = ["gradient", "sensitivity", "deconvnet", "guided_backprop"]


# ---------------------------------------------------------------- Embedding
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_embedding_matches_the_reference(dtype):
    rng = np.random.default_rng(1)
    W = normal(rng, 9, 5)
    ids = rng.integers(0, 9, size=(3, 4)).astype(dtype)
    ids[0, :2] = 8, 0  # the first and the last token of the vocabulary
    layer = Embedding(W)
    Y = layer.forward(ids)
    close(Y, naive.embedding_forward(ids, W), dtype)
    assert layer.output_shape((3, 4)) == (3, 4, 5)
    R = normal(rng, *Y.shape, dtype=dtype)
    for rule, param in LRP_RULES + [(g, None) for g in GRADIENTS]:
        close(layer.relevance(ids, Y, R, Rule(rule, param)), naive.embedding_lrp(R.astype(np.float64)), dtype)


@pytest.mark.parametrize("bad, text", [(2.5, "token id 2.5"), (-1.0, "token id -1"), (9.0, "token id 9"),
                                       (np.nan, "token id nan")])
def test_embedding_names_the_first_bad_id(bad, text):
    ids = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    ids[1, 2] = bad
    with pytest.raises(ValueError, match=rf"Embedding: {text} \(sample 1, position 2\) is not a whole number "
                                         rf"in \[0, 9\): the vocabulary has 9 tokens"):
        Embedding(np.ones((9, 2))).forward(ids)


def test_embedding_checks_its_arguments():
    with pytest.raises(ValueError, match="Embedding: W must have 2 dimensions"):
        Embedding(np.ones(4))
    with pytest.raises(ValueError, match="Embedding: W must hold one vector per token"):
        Embedding(np.ones((0, 4)))
    with pytest.raises(ValueError, match=r"expects token ids of shape \(N, T\), got \(N\)"):
        Embedding(np.ones((3, 4))).output_shape((2,))


# ---------------------------------------------------------------- Rearrange and Reshape
# a (3, 2) sample read as (2, 4): a transpose, a repeat of value 5, a zero
INDEX = np.array([0, 2, 4, 5, -1, 5, 5, 1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rearrange_with_repeats_and_zeros_matches_the_reference(dtype):
    rng = np.random.default_rng(2)
    X = normal(rng, 3, 3, 2, dtype=dtype)
    layer = Rearrange(INDEX, (2, 4))
    Y = layer.forward(X)
    close(Y, naive.rearrange_forward(X.astype(np.float64), INDEX, (2, 4)), dtype)
    assert Y[0, 0, 0] == X[0, 0, 0] and Y[1, 1, 0] == 0 and Y[2, 0, 3] == Y[2, 1, 1] == X[2, 2, 1]
    R = normal(rng, *Y.shape, dtype=dtype)
    expected = naive.rearrange_lrp(X.astype(np.float64), INDEX, R.astype(np.float64))
    for rule, param in LRP_RULES + [(g, None) for g in GRADIENTS]:
        close(layer.relevance(X, Y, R, Rule(rule, param)), expected, dtype)
    # value 3 is read by no output; value 5 gets its three readers' relevance, summed in a fixed order
    relevance = layer.relevance(X, Y, R, "epsilon", 0.1)
    assert np.all(relevance[:, 1, 1] == 0)
    assert np.array_equal(relevance[:, 2, 1], (R[:, 0, 3] + R[:, 1, 1]) + R[:, 1, 2])
    # conserved over the values read (the zero reads nothing)
    np.testing.assert_allclose(relevance.sum(axis=(1, 2)), R.sum(axis=(1, 2)) - R[:, 1, 0],
                               rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_rearrange_reads_the_batch_sample_by_sample():
    """Many samples (more than one block of the kernels' parallel work)."""
    rng = np.random.default_rng(3)
    X = normal(rng, 40, 7, 11)
    index = rng.integers(-1, 77, size=3 * 50)
    layer = Rearrange(index, (3, 50))
    Y = layer.forward(X)
    np.testing.assert_array_equal(Y, naive.rearrange_forward(X, index, (3, 50)))
    R = normal(rng, *Y.shape)
    np.testing.assert_allclose(layer.relevance(X, Y, R, "simple"), naive.rearrange_lrp(X, index, R), rtol=1e-12)


def test_rearrange_of_numpy_steps():
    """Heads split and transposed, a slice, zero padding and a repeat, as an
    importer builds them: the layer computes what numpy computes."""
    rng = np.random.default_rng(12)
    X = normal(rng, 2, 3, 8)  # (N, T, D), D = 2 heads x 4

    def steps(a):
        heads = a.reshape(3, 2, 4).transpose(1, 0, 2)  # (h, T, d)
        padded = np.pad(heads[:, 1:, :3], ((0, 0), (1, 0), (0, 0)), constant_values=-1)
        return np.broadcast_to(padded[:, None], (2, 2, 3, 3))  # repeated heads (grouped-query attention)

    layer = Rearrange.of((3, 8), steps)
    assert layer.output_shape(X.shape) == (2, 2, 2, 3, 3)
    Y = layer.forward(X)
    expected = np.stack([steps(sample) for sample in X])
    expected[:, :, :, 0, :] = 0  # the padding reads -1: zeros
    np.testing.assert_array_equal(Y, expected)
    R = normal(rng, *Y.shape)
    np.testing.assert_allclose(layer.relevance(X, Y, R, "simple"), naive.rearrange_lrp(X, layer.index, R),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="Rearrange.of: the operation must return an array of one axis or more"):
        Rearrange.of((3,), lambda a: a[0])


def test_rearrange_and_reshape_check_their_arguments():
    with pytest.raises(ValueError, match=r"Rearrange: index must hold one entry per output value, 6 for shape "
                                         r"\(2, 3\), got 5"):
        Rearrange(np.arange(5), (2, 3))
    with pytest.raises(ValueError, match=r"Rearrange: index must hold -1 \(zero\) or indices"):
        Rearrange([0, -2], (2,))
    with pytest.raises(ValueError, match="Rearrange: index must hold whole numbers"):
        Rearrange([0, 1.5], (2,))
    with pytest.raises(ValueError, match="Rearrange: shape must be one positive int or more"):
        Rearrange([], ())
    with pytest.raises(ValueError, match=r"expects samples of more than 5 values \(the index reads value 5\), "
                                         r"got \(N, 2, 2\)"):
        Rearrange(INDEX, (2, 4)).output_shape((1, 2, 2))
    assert Rearrange(INDEX, (2, 4)).output_shape((7, 6)) == (7, 2, 4)
    with pytest.raises(ValueError, match=r"expects samples of more than 5 values"):
        Rearrange(INDEX, (2, 4)).forward(np.ones((2, 5)))  # never reads past a sample
    with pytest.raises(ValueError, match=r"Reshape: shape must be one positive int or more"):
        Reshape((2, 0))
    with pytest.raises(ValueError, match=r"expects samples of 6 values \(to reshape to \(N, 2, 3\)\), got \(N, 7\)"):
        Reshape((2, 3)).output_shape((1, 7))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_reshape_keeps_the_values_and_reshapes_relevance_back(dtype):
    rng = np.random.default_rng(4)
    X = normal(rng, 2, 3, 4, dtype=dtype)
    layer = Reshape((2, 2, 3))
    Y = layer.forward(X)
    assert Y.shape == (2, 2, 2, 3) and layer.output_shape(X.shape) == Y.shape
    np.testing.assert_array_equal(Y.reshape(X.shape), X)
    R = normal(rng, *Y.shape, dtype=dtype)
    for rule in ("epsilon", "gradient"):
        np.testing.assert_array_equal(layer.relevance(X, Y, R, rule, 0.1 if rule == "epsilon" else None),
                                      R.reshape(X.shape))


# ---------------------------------------------------------------- Bias
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("b_shape", [(5, 4), (1, 1, 4), (), (3, 1, 4)])
def test_bias_matches_the_reference(dtype, b_shape):
    rng = np.random.default_rng(5)
    X = normal(rng, 2, 3, 5, 4, dtype=dtype)
    b = rng.normal(size=b_shape)
    layer = Bias(b)
    Y = layer.forward(X)
    close(Y, X.astype(np.float64) + b, dtype)
    R = normal(rng, *Y.shape, dtype=dtype)
    for rule, param in LRP_RULES:
        close(layer.relevance(X, Y, R, Rule(rule, param)),
              naive.bias_lrp(X.astype(np.float64), b, R.astype(np.float64), rule, param), dtype)
    for method in GRADIENTS:
        np.testing.assert_array_equal(layer.relevance(X, Y, R, method), R)


def test_bias_gives_the_input_its_share():
    X = np.array([[1.0, -2.0, 3.0]])
    layer = Bias([1.0, 2.0, -3.0])
    Y = layer.forward(X)
    R = np.array([[4.0, 5.0, 6.0]])
    # x R / (y + 0.5 sgn y), y = (2, 0, 0), sgn(0) = +1: 1*4/2.5, -2*5/0.5, 3*6/0.5
    relevance = layer.relevance(X, Y, R, "epsilon", 0.5)
    np.testing.assert_allclose(relevance, [[1.6, -20.0, 36.0]], rtol=1e-15)


def test_bias_checks_its_arguments():
    with pytest.raises(ValueError, match="Bias: b contains NaN"):
        Bias([1.0, np.inf])
    with pytest.raises(ValueError, match="Bias: b must hold at least one value"):
        Bias(np.ones((2, 0)))
    with pytest.raises(ValueError, match=r"expects input whose samples the bias b of shape \(3, 4\) broadcasts to, "
                                         r"such as \(N, ..., 3, 4\), got \(N, 4, 4\)"):
        Bias(np.ones((3, 4))).output_shape((2, 4, 4))
    assert Bias(np.ones((1, 3, 1))).output_shape((2, 5, 3, 7)) == (2, 5, 3, 7)
    with pytest.raises(ValueError, match=r"the bias b of shape \(3,\) broadcasts to"):
        Bias(np.ones(3)).forward(np.ones((2, 4)))
    assert Bias(np.ones((1, 1, 4))).b.shape == (4,)


# ---------------------------------------------------------------- RMSNorm
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(2, 3, 6), (3, 6), (2, 2, 3, 6)])
def test_rmsnorm_matches_the_reference(dtype, shape):
    rng = np.random.default_rng(6)
    gamma = normal(rng, 6) + 1
    X = normal(rng, *shape, dtype=dtype)
    layer = RMSNorm(gamma, eps=1e-5)
    Y = layer.forward(X)
    close(Y, naive.rmsnorm_forward(X.astype(np.float64), gamma, 1e-5), dtype)
    R = normal(rng, *Y.shape, dtype=dtype)
    for rule, param in LRP_RULES:
        stabilizer = Rule(rule, param).epsilon()
        close(layer.relevance(X, Y, R, Rule(rule, param)),
              naive.rmsnorm_lrp(X.astype(np.float64), gamma, 1e-5, R.astype(np.float64), stabilizer), dtype)


def test_rmsnorm_keeps_each_features_relevance_but_for_the_stabilizer():
    rng = np.random.default_rng(7)
    X, gamma = normal(rng, 4, 8), normal(rng, 8)
    layer = RMSNorm(gamma)
    Y = layer.forward(X)
    R = normal(rng, *Y.shape)
    np.testing.assert_allclose(layer.relevance(X, Y, R, "epsilon", 1e-12), R, rtol=1e-9)


def test_rmsnorm_gradient_matches_finite_differences():
    rng = np.random.default_rng(8)
    X, gamma, G = normal(rng, 2, 3, 5), normal(rng, 5), normal(rng, 2, 3, 5)
    layer = RMSNorm(gamma, eps=1e-3)
    gradient = layer.relevance(X, layer.forward(X), G, "gradient")
    step, numeric = 1e-6, np.zeros_like(X)
    for index in np.ndindex(*X.shape):
        up, down = X.copy(), X.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = ((layer.forward(up) - layer.forward(down)) * G).sum() / (2 * step)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-8)


def test_rmsnorm_checks_its_arguments():
    with pytest.raises(ValueError, match="RMSNorm: gamma must hold one value per feature, got none"):
        RMSNorm([])
    with pytest.raises(ValueError, match="RMSNorm: eps must be finite and >= 0"):
        RMSNorm([1.0], eps=-1)
    with pytest.raises(ValueError, match=r"expects 3 features \(last axis\), got \(N, 4\)"):
        RMSNorm(np.ones(3)).output_shape((2, 4))


# ---------------------------------------------------------------- Linear on tokens
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_linear_on_tokens_is_the_per_row_result(dtype):
    rng = np.random.default_rng(9)
    layer = Linear(normal(rng, 5, 3), normal(rng, 3))
    X = normal(rng, 2, 4, 5, dtype=dtype)
    Y = layer.forward(X)
    assert Y.shape == (2, 4, 3) and layer.output_shape(X.shape) == (2, 4, 3)
    rows, Yrows = X.reshape(8, 5), layer.forward(X.reshape(8, 5))
    np.testing.assert_array_equal(Y.reshape(8, 3), Yrows)
    R = normal(rng, *Y.shape, dtype=dtype)
    rules = LRP_RULES[:-3] + [("zb", (np.full(5, -3.0), 2.5)), ("flat", None), ("ww", None)]
    for rule, param in rules + [(g, None) for g in GRADIENTS]:
        chosen = Rule(rule, param)
        actual = layer.relevance(X, Y, R, chosen)
        assert actual.shape == X.shape
        np.testing.assert_array_equal(actual.reshape(8, 5), layer.relevance(rows, Yrows, R.reshape(8, 3), chosen))
        if rule in ("simple", "epsilon", "flat", "ww"):
            close(actual.reshape(8, 5), naive.dense_lrp(rows.astype(np.float64), layer.W, layer.B,
                                                        R.reshape(8, 3).astype(np.float64), rule, param), dtype)
    dW, dB = layer.parameter_gradient(X, R)
    np.testing.assert_allclose(dW, rows.T.astype(np.float64) @ R.reshape(8, 3), rtol=1e-5)
    np.testing.assert_allclose(dB, R.reshape(8, 3).sum(axis=0), rtol=1e-5)


def test_linear_names_the_expected_shape():
    layer = Linear(np.ones((6, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 6\), got \(N, 5\)$"):
        layer.output_shape((1, 5))
    with pytest.raises(ValueError, match=r"expects input of shape \(N, \.\.\., 6\) \(6 features on the last axis\), "
                                         r"got \(N, 3, 2\) \(add a Flatten layer before it\)"):
        layer.output_shape((1, 3, 2))
    with pytest.raises(ValueError, match=r"got \(N, 3, 4\)$"):
        layer.output_shape((1, 3, 4))


# ---------------------------------------------------------------- Scale by a table
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_scale_by_a_table_matches_the_reference(dtype):
    rng = np.random.default_rng(10)
    table = normal(rng, 3, 4)  # (T, d): a rotary cos table over (N, h, T, d)
    X = normal(rng, 2, 2, 3, 4, dtype=dtype)
    X[0, 0, 0, :2] = 0
    layer = Scale(table[None])
    assert layer.scale.shape == (3, 4) and layer.describe() == "Scale 3x4"
    Y = layer.forward(X)
    close(Y, X.astype(np.float64) * table, dtype)
    R = normal(rng, *Y.shape, dtype=dtype)
    spread = np.broadcast_to(table, X.shape[1:])
    for rule, param in LRP_RULES:
        rule_param = Rule(rule, param).param
        close(layer.relevance(X, Y, R, Rule(rule, param)),
              naive.scale_lrp(X.astype(np.float64), spread, R.astype(np.float64), rule, rule_param), dtype)
    close(layer.relevance(X, Y, R, "gradient"), R.astype(np.float64) * table, dtype)
    # the same layer on another number of tokens' worth of heads: cached per shape
    X2 = normal(rng, 1, 5, 3, 4, dtype=dtype)
    close(layer.forward(X2), X2.astype(np.float64) * table, dtype)


def test_scale_keeps_its_scalar_and_per_channel_forms():
    assert Scale(2.0).scale.shape == (1,) and Scale(2.0).describe() == "Scale 1"
    assert Scale(np.ones((1, 1, 3))).scale.shape == (3,) and Scale(np.ones((1, 1, 3))).describe() == "Scale 3"
    with pytest.raises(ValueError, match=r"expects input whose samples the scale of shape \(3, 4\) broadcasts to"):
        Scale(np.ones((3, 4))).output_shape((2, 2, 4, 4))
    assert Scale(np.ones((3, 1))).output_shape((2, 2, 3, 5)) == (2, 2, 3, 5)


# ---------------------------------------------------------------- a network and the lrpnb format
def token_network(rng, dtype=np.float64):
    """ids (N, 4) -> embedding + positions -> RMSNorm -> Linear on tokens ->
    rotary-like table -> the last token's vector -> Linear to 3 classes."""
    T, D = 4, 6
    last = np.arange((T - 1) * D, T * D)
    return Network([
        Node("embed", Embedding(rng.normal(size=(11, D)).astype(dtype)), "input"),
        Node("positions", Bias(rng.normal(size=(T, D)).astype(dtype)), "embed"),
        Node("norm", RMSNorm(rng.normal(size=D).astype(dtype) + 1, eps=1e-5), "positions"),
        Node("dense", Linear(rng.normal(size=(D, D)).astype(dtype), rng.normal(size=D).astype(dtype)), "norm"),
        Node("rotary", Scale(rng.normal(size=(T, D)).astype(dtype)), "dense"),
        Node("heads", Reshape((T, 2, 3)), "rotary"),
        Node("last", Rearrange(last, (D,)), "heads"),
        Node("classify", Linear(rng.normal(size=(D, 3)).astype(dtype), np.zeros(3, dtype=dtype)), "last")])


def test_a_token_network_explains_and_round_trips(tmp_path):
    rng = np.random.default_rng(11)
    net = token_network(rng)
    ids = np.array([[1.0, 5.0, 10.0, 0.0], [3.0, 3.0, 7.0, 2.0]])
    Y = net.forward(ids)
    assert Y.shape == (2, 3)
    relevance = net.explain(ids, rule="epsilon", param=1e-9)
    assert relevance.shape == (2, 4)
    path = tmp_path / "tokens.lrpnb"
    lrpnb.save(net, path)
    back = lrpnb.load(path)
    assert [node.layer.describe() for node in back.nodes] == [node.layer.describe() for node in net.nodes]
    np.testing.assert_array_equal(back.forward(ids), Y)
    np.testing.assert_array_equal(back.explain(ids, rule="epsilon", param=1e-9), relevance)
    assert back.nodes[-2].layer.index.dtype == np.int64 and back.nodes[-3].layer.shape == (4, 2, 3)

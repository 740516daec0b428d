"""The layers of imported models (padded, dilated and grouped convolutions,
padded max pooling, average pooling, BatchNorm, Sigmoid, Add, Concat) and the
graph network, against the plain-numpy reference in naive.py."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lrpnb
import naive
from conftest import relative_error

RULES = [("simple", None), ("epsilon", 0.01), ("alphabeta", 2.0), ("alphabeta", 1.0), ("flat", None),
         ("ww", None), ("zplus", None), ("gamma", 0.25), ("zb", (-2.0, 1.5)), ("gradient", None)]
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


def check(actual, expected, dtype):
    assert actual.dtype == dtype
    assert actual.shape == expected.shape
    assert relative_error(actual, expected) <= TOLERANCE[dtype]


@st.composite
def general_conv(draw):
    groups = draw(st.integers(1, 3))
    d, n = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    h, w = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(4))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    H = max(1, (h - 1) * dilation[0] + 1 - padding[0] - padding[1]) + draw(st.integers(0, 3))
    W = max(1, (w - 1) * dilation[1] + 1 - padding[2] - padding[3]) + draw(st.integers(0, 3))
    return dict(shape=(draw(st.integers(1, 2)), H, W, d), filters=(h, w, d // groups, n), stride=stride,
                padding=padding, dilation=dilation, groups=groups)


@settings(max_examples=60, deadline=None)
@given(case=general_conv(), seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([np.float64, np.float32]),
       rule=st.sampled_from(RULES))
def test_padded_dilated_grouped_convolution(case, seed, dtype, rule):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=case["shape"])
    X[rng.random(X.shape) < 0.1] = 0
    W, B = rng.normal(size=case["filters"]), rng.normal(size=case["filters"][3])
    options = {key: case[key] for key in ("stride", "padding", "dilation", "groups")}
    layer = lrpnb.Convolution(W.astype(dtype), B.astype(dtype), **options)
    Y = layer.forward(X.astype(dtype))
    expected_Y = naive.conv_general_forward(X, W, B, **options)
    assert layer.output_shape(X.shape) == expected_Y.shape
    check(Y, expected_Y, dtype)
    R = rng.normal(size=Y.shape)
    name, value = lrpnb.rules.resolve(*rule)
    actual = layer.relevance(X.astype(dtype), Y, R.astype(dtype), name, value)
    check(actual, naive.conv_general_lrp(X, W, B, R, rule[0], rule[1], **options), dtype)


def test_padding_spec_and_errors():
    W, B = np.ones((3, 3, 2, 4)), np.zeros(4)
    assert lrpnb.Convolution(W, B, padding=1).padding == (1, 1, 1, 1)
    assert lrpnb.Convolution(W, B, padding=(1, 2)).padding == (1, 1, 2, 2)
    assert lrpnb.Convolution(W, B, padding=(0, 1, 2, 3)).padding == (0, 1, 2, 3)
    with pytest.raises(ValueError, match="padding must be a non-negative int"):
        lrpnb.Convolution(W, B, padding=-1)
    with pytest.raises(ValueError, match="groups must be a positive divisor of the 4 output channels"):
        lrpnb.Convolution(W, B, groups=3)
    with pytest.raises(ValueError, match="padding .* must be smaller than the window"):
        lrpnb.MaxPool((2, 2), (2, 2), padding=2)
    layer = lrpnb.Convolution(W, B, padding=1, groups=2)
    assert layer.output_shape((5, 4, 4, 4)) == (5, 4, 4, 4)
    with pytest.raises(ValueError, match=r"expects input of shape \(N, H>=1, W>=1, 4\)"):
        layer.output_shape((5, 4, 4, 2))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rule", RULES)
def test_padded_maxpool(rule, dtype):
    rng = np.random.default_rng(4)
    X = rng.integers(-3, 3, size=(2, 5, 6, 3)).astype(float)  # ties, and negative maxima beside the padding
    layer = lrpnb.MaxPool((3, 3), (2, 2), padding=(1, 1, 1, 0))
    Y = layer.forward(X.astype(dtype))
    Xp = naive.padded(X, layer.padding, -np.inf)
    check(Y, naive.maxpool_forward(Xp, (3, 3), (2, 2)), dtype)
    R = rng.normal(size=Y.shape)
    name, value = lrpnb.rules.resolve(*rule)
    actual = layer.relevance(X.astype(dtype), Y, R.astype(dtype), name, value)
    if name == "gradient":
        expected = naive.maxpool_gradient(Xp, R, (3, 3), (2, 2))
    else:
        expected = naive.maxpool_lrp(Xp, R, (3, 3), (2, 2), name)
    check(actual, naive.unpadded(expected, layer.padding), dtype)


def test_maxpool_gradient_goes_to_the_first_maximum_and_lrp_splits_ties():
    X = np.array([[3.0, 1.0], [3.0, 3.0]]).reshape(1, 2, 2, 1)
    layer = lrpnb.MaxPool((2, 2), (2, 2))
    Y = layer.forward(X)
    G = layer.relevance(X, Y, np.full((1, 1, 1, 1), 6.0), "gradient", None)
    np.testing.assert_array_equal(G.reshape(2, 2), [[6.0, 0.0], [0.0, 0.0]])
    R = layer.relevance(X, Y, np.full((1, 1, 1, 1), 6.0), "epsilon", 0.01)
    np.testing.assert_array_equal(R.reshape(2, 2), [[2.0, 0.0], [2.0, 2.0]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("include_pad", [False, True])
@pytest.mark.parametrize("rule", RULES)
def test_average_pool(rule, include_pad, dtype):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(2, 6, 5, 3)) + 0.5
    layer = lrpnb.AveragePool((3, 2), (2, 2), padding=(1, 1, 0, 1), count_include_pad=include_pad)
    Y = layer.forward(X.astype(dtype))
    args = ((3, 2), (2, 2), (1, 1, 0, 1), include_pad)
    check(Y, naive.avgpool_forward(X, *args), dtype)
    R = rng.normal(size=Y.shape)
    name, value = lrpnb.rules.resolve(*rule)
    check(layer.relevance(X.astype(dtype), Y, R.astype(dtype), name, value),
          naive.avgpool_lrp(X, R, *args, name, value), dtype)


def test_global_average_pool():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(3, 4, 5, 2))
    layer = lrpnb.GlobalAveragePool()
    Y = layer.forward(X)
    np.testing.assert_allclose(Y, X.mean(axis=(1, 2), keepdims=True), rtol=1e-13)
    R = rng.normal(size=Y.shape)
    expected = X / 20 * R / (Y + 1e-2 * naive.sgn(Y))
    np.testing.assert_allclose(layer.relevance(X, Y, R, "epsilon", 1e-2), expected, rtol=1e-12)


def test_sigmoid_and_batchnorm():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(2, 3, 3, 4)) * 30
    sigmoid = lrpnb.Sigmoid()
    Y = sigmoid.forward(X)
    np.testing.assert_allclose(Y, 1 / (1 + np.exp(-X)), rtol=1e-13)
    G = rng.normal(size=X.shape)
    np.testing.assert_allclose(sigmoid.relevance(X, Y, G, "gradient", None), G * Y * (1 - Y), rtol=1e-12)
    assert sigmoid.forward(X.astype(np.float32)).dtype == np.float32
    gamma, beta, mean, var = rng.normal(size=4), rng.normal(size=4), rng.normal(size=4), rng.random(4) + 0.1
    bn = lrpnb.BatchNorm(gamma, beta, mean, var, eps=1e-3)
    Y = bn.forward(X)
    np.testing.assert_allclose(Y, (X - mean) * gamma / np.sqrt(var + 1e-3) + beta, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bn.relevance(X, Y, G, "gradient", None), G * gamma / np.sqrt(var + 1e-3),
                               rtol=1e-12)
    assert bn.relevance(X, Y, G, "epsilon", 0.1) is G  # zennit's Pass rule
    with pytest.raises(ValueError, match="one value per channel"):
        lrpnb.BatchNorm(gamma, beta, mean[:3], var)


def residual_net(rng, dtype=np.float64):
    """input -> conv(pad 1) -> relu -> [conv(pad 1) -> relu] + skip -> concat(add, conv1x1)
    -> global average pool -> flatten -> dense -> softmax."""
    conv = lambda d, n, **kw: lrpnb.Convolution(rng.normal(size=(3, 3, d, n)).astype(dtype) / 3,  # noqa: E731
                                                rng.normal(size=n).astype(dtype) / 10, padding=1, **kw)
    nodes = [
        lrpnb.Node("stem", conv(2, 4), "input"),
        lrpnb.Node("stem_relu", lrpnb.Rect(), "stem"),
        lrpnb.Node("branch", conv(4, 4), "stem_relu"),
        lrpnb.Node("branch_relu", lrpnb.Rect(), "branch"),
        lrpnb.Node("join", lrpnb.Add(), ["branch_relu", "stem_relu"]),
        lrpnb.Node("side", lrpnb.Convolution(rng.normal(size=(1, 1, 2, 3)).astype(dtype), np.zeros(3, dtype)),
                   "input"),
        lrpnb.Node("cat", lrpnb.Concat(), ["join", "side"]),
        lrpnb.Node("pool", lrpnb.GlobalAveragePool(), "cat"),
        lrpnb.Node("flat", lrpnb.Flatten(), "pool"),
        lrpnb.Node("fc", lrpnb.Linear(rng.normal(size=(7, 5)).astype(dtype), rng.normal(size=5).astype(dtype)),
                   "flat"),
        lrpnb.Node("prob", lrpnb.SoftMax(), "fc"),
    ]
    return lrpnb.Network(nodes)


def naive_residual(net, X, R, rule, param):
    """The same graph through naive.py, written out by hand. Under one LRP
    rule the joins (the Add and the global average pool) take zennit's Norm
    rule, epsilon 1e-6; a gradient method goes through them too."""
    join_rule, join_param = (rule, param) if rule == "gradient" else ("epsilon", 1e-6)
    L = {node.name: node.layer for node in net.nodes}
    conv = lambda layer, x: naive.conv_general_forward(x, layer.W, layer.B, padding=layer.padding)  # noqa: E731
    conv_lrp = lambda layer, x, r: naive.conv_general_lrp(x, layer.W, layer.B, r, rule, param,  # noqa: E731
                                                          padding=layer.padding)
    stem = conv(L["stem"], X)
    stem_relu = np.maximum(stem, 0)
    branch_relu = np.maximum(conv(L["branch"], stem_relu), 0)
    join = branch_relu + stem_relu
    side = conv(L["side"], X)
    cat = np.concatenate([join, side], axis=-1)
    pool = cat.mean(axis=(1, 2), keepdims=True)
    flat = pool.reshape(len(X), -1)
    scores = flat @ L["fc"].W + L["fc"].B
    start = np.zeros_like(scores)
    rows = np.arange(len(X))
    start[rows, scores.argmax(axis=1)] = scores[rows, scores.argmax(axis=1)]
    r_flat = naive.dense_lrp(flat, L["fc"].W, L["fc"].B, start, rule, param)
    r_cat = naive.avgpool_lrp(cat, r_flat.reshape(pool.shape), cat.shape[1:3], (1, 1), (0, 0, 0, 0), True,
                              join_rule, join_param)
    r_join, r_side = r_cat[..., :4], r_cat[..., 4:]
    r_branch, r_skip = naive.add_lrp([branch_relu, stem_relu], r_join, join_rule, join_param)
    r_stem = conv_lrp(L["branch"], stem_relu, r_branch) + r_skip
    r_input = conv_lrp(L["stem"], X, r_stem) + conv_lrp(L["side"], X, r_side)
    return r_input, {"join": r_join, "stem_relu": r_stem}


@pytest.mark.parametrize("rule, param", [("epsilon", 0.01), ("alphabeta", 2.0), ("zplus", None),
                                         ("gamma", 0.25), ("flat", None)])
def test_graph_network_against_the_reference(rule, param):
    rng = np.random.default_rng(8)
    net = residual_net(rng)
    X = rng.normal(size=(3, 6, 5, 2))
    R, kept = net.explain(X, rule=rule, param=param, layers=["join", "stem_relu"])
    expected, expected_kept = naive_residual(net, X, R, rule, param)
    assert relative_error(R, expected) <= 1e-10
    for name in ("join", "stem_relu"):
        assert relative_error(kept[name], expected_kept[name]) <= 1e-10
    # float32 stays float32 and agrees
    R32 = net.explain(X.astype(np.float32), rule=rule, param=param)
    assert R32.dtype == np.float32 and relative_error(R32, expected) <= 1e-4


def test_graph_gradient_is_the_chain_rule():
    rng = np.random.default_rng(9)
    net = residual_net(rng)
    X = rng.normal(size=(2, 5, 5, 2))
    G = net.explain(X, target=1, rule="gradient")
    # central differences of the class-1 score
    step, numeric = 1e-6, np.zeros_like(X)
    for index in np.ndindex(X.shape[1:]):
        for n in range(2):
            Xp, Xm = X.copy(), X.copy()
            Xp[(n,) + index] += step
            Xm[(n,) + index] -= step
            numeric[(n,) + index] = (net.scores(Xp)[n, 1] - net.scores(Xm)[n, 1]) / (2 * step)
    np.testing.assert_allclose(G, numeric, rtol=1e-5, atol=1e-7)


def test_graph_layer_sums_rules_by_name_and_composites():
    rng = np.random.default_rng(10)
    net = residual_net(rng)
    X = rng.normal(size=(2, 6, 6, 2))
    _, sums = net.explain(X, rule="epsilon", param=1e-9, return_layer_sums=True)
    assert sums.shape == (2, len(net.layers))  # the final SoftMax is left out: 10 layers + the input
    # with a tiny epsilon, relevance is conserved up to what the biases absorb; the sum at the
    # concatenation equals the sum at the pool's input, up to the pool's Norm rule (epsilon 1e-6)
    np.testing.assert_allclose(sums[:, 7], sums[:, 8], rtol=1e-5)
    net.set_lrp_parameters("flat", nodes=["stem", 5])
    assert net.node("stem").layer.lrp_var == "flat" and net.node("side").layer.lrp_var == "flat"
    assert net.node("branch").layer.lrp_var is None
    with pytest.raises(KeyError, match="no node named 'nope'"):
        net.node("nope")
    rules = lrpnb.EpsilonPlusFlat().rules(net.layers)
    names = [node.name for node in net.nodes]
    assert rules[names.index("stem")] == ("flat", None)
    assert rules[names.index("branch")] == ("zplus", None)
    assert rules[names.index("join")] == ("epsilon", 1e-6) and rules[names.index("pool")] == ("epsilon", 1e-6)
    R = net.explain(X, composite=lrpnb.EpsilonPlusFlat(epsilon=0.5))
    assert R.shape == X.shape and np.isfinite(R).all()
    many = net.explain(X, target="all", rule="epsilon", param=0.01, layers=["join"])
    assert many[0].shape == (2, 5) + X.shape[1:] and many[1]["join"].shape == (2, 5, 6, 6, 4)
    one = net.explain(X, target=3, rule="epsilon", param=0.01, layers=["join"])
    np.testing.assert_allclose(many[1]["join"][:, 3], one[1]["join"], rtol=1e-12)


def test_graph_errors():
    layer = lrpnb.Rect()
    with pytest.raises(ValueError, match="reads 'b', which no earlier node outputs"):
        lrpnb.Network([lrpnb.Node("a", layer, "input"), lrpnb.Node("c", lrpnb.Rect(), "b")])
    with pytest.raises(ValueError, match="the name 'a' is used twice"):
        lrpnb.Network([lrpnb.Node("a", layer, "input"), lrpnb.Node("a", lrpnb.Rect(), "a")])
    with pytest.raises(ValueError, match="Add takes two or more inputs"):
        lrpnb.Node("s", lrpnb.Add(), ["input"])
    with pytest.raises(ValueError, match="takes one input, got 2"):
        lrpnb.Node("s", lrpnb.Rect(), ["input", "input"])
    with pytest.raises(ValueError, match="joins several inputs"):
        lrpnb.Network([lrpnb.Add()])
    net = residual_net(np.random.default_rng(1))
    with pytest.raises(ValueError, match=r"input does not fit node 0 \('stem'\)"):
        net.explain(np.zeros((1, 6, 6, 3)))
    with pytest.raises(ValueError, match="toolbox's model formats hold chains"):
        lrpnb.save(net, "/tmp/never-written.txt")
    with pytest.raises(ValueError, match="sequential networks only"):
        net.parameter_gradients(np.zeros((1, 6, 6, 2)), lambda s: (0.0, np.zeros_like(s)))


def test_sequential_networks_are_graphs_of_a_chain():
    rng = np.random.default_rng(3)
    layers = [lrpnb.Convolution(rng.normal(size=(3, 3, 1, 2)), np.zeros(2)), lrpnb.Rect(), lrpnb.Flatten(),
              lrpnb.Linear(rng.normal(size=(18, 3)), np.zeros(3))]
    chain = lrpnb.Network(layers)
    assert chain.is_sequential and [node.name for node in chain.nodes] == ["0", "1", "2", "3"]
    nodes = lrpnb.Network([lrpnb.Node(f"n{k}", layer, "input" if k == 0 else f"n{k - 1}")
                           for k, layer in enumerate(layers)])
    X = rng.normal(size=(2, 5, 5, 1))
    np.testing.assert_array_equal(chain.explain(X, rule="epsilon", param=0.1),
                                  nodes.explain(X, rule="epsilon", param=0.1))
    _, kept = chain.explain(X, rule="epsilon", param=0.1, layers=["1", 2])
    assert kept["1"].shape == (2, 3, 3, 2) and kept["2"].shape == (2, 18)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_local_response_normalisation(dtype):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(2, 3, 2, 6)) * 2
    layer = lrpnb.LRN(size=4, alpha=0.3, beta=0.75, bias=1.5)

    def reference(X):  # ONNX's definition, channel by channel
        out = np.empty_like(X)
        C = X.shape[-1]
        for c in range(C):
            window = slice(max(0, c - 1), min(C, c + 2 + 1))  # floor(3/2) = 1 below, ceil(3/2) = 2 above
            out[..., c] = X[..., c] / (1.5 + 0.3 / 4 * (X[..., window] ** 2).sum(axis=-1)) ** 0.75
        return out

    Y = layer.forward(X.astype(dtype))
    assert Y.dtype == dtype
    np.testing.assert_allclose(Y, reference(X), rtol=1e-5 if dtype == np.float32 else 1e-12)
    G = rng.normal(size=X.shape)
    step, numeric = 1e-6, np.zeros_like(X)
    for index in np.ndindex(X.shape):
        Xp, Xm = X.copy(), X.copy()
        Xp[index] += step
        Xm[index] -= step
        numeric[index] = ((reference(Xp) - reference(Xm)) * G).sum() / (2 * step)
    gradient = layer.relevance(X.astype(dtype), Y, G.astype(dtype), "gradient", None)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-4 if dtype == np.float32 else 1e-7, atol=1e-6)
    R = G.astype(dtype)
    assert layer.relevance(X.astype(dtype), Y, R, "epsilon", 0.1) is R  # the Caffe toolbox: identity

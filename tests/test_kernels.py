"""Every layer's forward and relevance kernels against the plain-numpy
reference in naive.py, on random shapes, strides, overlapping pools, ties in
max pooling and zero inputs."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lrpnb
import naive
from conftest import relative_error

RULES = [("simple", None), ("epsilon", 0.01), ("epsilon", 1.0), ("alphabeta", 2.0),
         ("alphabeta", 1.0), ("alphabeta", 0.0), ("alphabeta", 0.5), ("flat", None), ("ww", None)]
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


def make_array(rng, shape, mode):
    """Random values: continuous, or small integers (ties and exact zeros)."""
    if mode == "discrete":
        return rng.integers(-2, 3, size=shape).astype(np.float64)
    values = rng.normal(size=shape)
    values[rng.random(shape) < 0.1] = 0.0
    return values


def check(actual, expected, dtype):
    assert actual.dtype == dtype
    assert actual.shape == expected.shape
    assert relative_error(actual, expected) <= TOLERANCE[dtype]


seeds = st.integers(0, 2**32 - 1)
modes = st.sampled_from(["continuous", "discrete"])
dtypes = st.sampled_from([np.float64, np.float32])
rules = st.sampled_from(RULES)


@given(seed=seeds, mode=modes, dtype=dtypes, rule=rules, N=st.integers(1, 3),
       m=st.integers(1, 7), n=st.integers(1, 6))
def test_linear(seed, mode, dtype, rule, N, m, n):
    rng = np.random.default_rng(seed)
    X = make_array(rng, (N, m), mode).astype(dtype)
    W, B = rng.normal(size=(m, n)).astype(dtype), rng.normal(size=n).astype(dtype)
    R = rng.normal(size=(N, n)).astype(dtype)
    layer = lrpnb.Linear(W, B)
    Y = layer.forward(X)
    X64, W64, B64, R64 = (a.astype(np.float64) for a in (X, W, B, R))
    check(Y, naive.dense_forward(X64, W64, B64), dtype)
    check(layer.relevance(X, Y, R, *rule), naive.dense_lrp(X64, W64, B64, R64, *rule), dtype)


@st.composite
def conv_case(draw):
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    s0, s1 = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H = h + s0 * draw(st.integers(0, 3)) + draw(st.integers(0, s0 - 1))
    Wd = w + s1 * draw(st.integers(0, 3)) + draw(st.integers(0, s1 - 1))
    return (draw(st.integers(1, 3)), H, Wd, draw(st.integers(1, 4)), h, w,
            draw(st.integers(1, 5)), s0, s1)


@given(seed=seeds, mode=modes, dtype=dtypes, rule=rules, case=conv_case())
def test_convolution(seed, mode, dtype, rule, case):
    N, H, Wd, d, h, w, n, s0, s1 = case
    rng = np.random.default_rng(seed)
    X = make_array(rng, (N, H, Wd, d), mode).astype(dtype)
    W = make_array(rng, (h, w, d, n), mode).astype(dtype)
    B = rng.normal(size=n).astype(dtype)
    layer = lrpnb.Convolution(W, B, stride=(s0, s1))
    Y = layer.forward(X)
    R = rng.normal(size=Y.shape).astype(dtype)
    X64, W64, B64, R64 = (a.astype(np.float64) for a in (X, W, B, R))
    check(Y, naive.conv_forward(X64, W64, B64, (s0, s1)), dtype)
    if rule[0] == "ww" and not (W64 ** 2).reshape(-1, n).sum(axis=0).all():
        return  # a filter of zeros has no w^2 shares (0/0, as in the toolbox)
    check(layer.relevance(X, Y, R, *rule),
          naive.conv_lrp(X64, W64, B64, R64, (s0, s1), *rule), dtype)


@given(seed=seeds, mode=modes, dtype=dtypes, rule=rules, case=conv_case(),
       kind=st.sampled_from(["sum", "max"]))
def test_pooling(seed, mode, dtype, rule, case, kind):
    N, H, Wd, d, hp, wp, _, s0, s1 = case  # strides smaller than the window overlap
    rng = np.random.default_rng(seed)
    X = make_array(rng, (N, H, Wd, d), mode).astype(dtype)
    layer = (lrpnb.SumPool if kind == "sum" else lrpnb.MaxPool)((hp, wp), (s0, s1))
    Y = layer.forward(X)
    R = rng.normal(size=Y.shape).astype(dtype)
    X64, R64 = X.astype(np.float64), R.astype(np.float64)
    forward = naive.sumpool_forward if kind == "sum" else naive.maxpool_forward
    lrp = naive.sumpool_lrp if kind == "sum" else naive.maxpool_lrp
    check(Y, forward(X64, (hp, wp), (s0, s1)), dtype)
    check(layer.relevance(X, Y, R, *rule), lrp(X64, R64, (hp, wp), (s0, s1), *rule), dtype)


def test_maxpool_splits_ties_evenly():
    X = np.array([[3.0, 3.0], [1.0, 3.0]]).reshape(1, 2, 2, 1)
    layer = lrpnb.MaxPool((2, 2), (2, 2))
    Y = layer.forward(X)
    R = layer.relevance(X, Y, np.full((1, 1, 1, 1), 6.0), "epsilon", 0.01)
    np.testing.assert_array_equal(R.reshape(2, 2), [[2.0, 2.0], [0.0, 2.0]])


def test_sumpool_alphabeta_is_the_corrected_formula():
    # one window, inputs 1, 3, -2, 0; alpha = 2, beta = -1; R = 1
    X = np.array([1.0, 3.0, -2.0, 0.0]).reshape(1, 2, 2, 1)
    layer = lrpnb.SumPool((2, 2), (2, 2))
    Y = layer.forward(X)
    assert Y.item() == pytest.approx(2.0 / 2.0)  # sum / sqrt(4)
    R = layer.relevance(X, Y, np.ones((1, 1, 1, 1)), "alphabeta", 2.0).ravel()
    np.testing.assert_allclose(R, [2 * 1 / 4, 2 * 3 / 4, -1 * 1.0, 0.0], rtol=1e-12)


def random_network(seed, depth):
    """A random small network (conv, activation, pooling, dense, SoftMax),
    as lrpnb layers and as the reference's spec, with an input batch."""
    rng = np.random.default_rng(seed)
    H = int(rng.integers(6, 11))
    d = int(rng.integers(1, 3))
    X = rng.normal(size=(2, H, H, d))
    layers, spec, shape = [], [], (2, H, H, d)
    for _ in range(depth + 1):
        h = int(rng.integers(1, 4))
        if shape[1] < h + 1:
            break
        n = int(rng.integers(1, 5))
        # scaled by fan-in so that Tanh does not saturate: saturated outputs
        # tie in float32 max pooling and would route relevance differently
        W = rng.normal(size=(h, h, shape[3], n)) / np.sqrt(h * h * shape[3])
        B = 0.1 * rng.normal(size=n)
        layers.append(lrpnb.Convolution(W, B, (1, 1)))
        spec.append(("conv", dict(W=W, B=B, stride=(1, 1))))
        kind = ["rect", "tanh"][int(rng.integers(2))]
        layers.append(lrpnb.Rect() if kind == "rect" else lrpnb.Tanh())
        spec.append((kind, {}))
        shape = layers[-2].output_shape(shape)
        if shape[1] >= 2:
            pool = ["sumpool", "maxpool"][int(rng.integers(2))]
            layers.append((lrpnb.SumPool if pool == "sumpool" else lrpnb.MaxPool)((2, 2), (1, 1)))
            spec.append((pool, dict(pool=(2, 2), stride=(1, 1))))
            shape = layers[-1].output_shape(shape)
    layers.append(lrpnb.Flatten())
    spec.append(("flatten", {}))
    features = int(np.prod(shape[1:]))
    W, B = rng.normal(size=(features, 4)), rng.normal(size=4)
    layers += [lrpnb.Linear(W, B), lrpnb.SoftMax()]
    spec += [("linear", dict(W=W, B=B)), ("softmax", {})]
    return lrpnb.Network(layers), spec, X


@given(seed=seeds, dtype=dtypes, rule=rules, depth=st.integers(0, 2))
def test_random_networks(seed, dtype, rule, depth):
    """Whole random networks (conv, pooling, dense, activations) against the reference.

    In float32 the 'simple' rule is left to the per-layer tests: its 1e-16
    stabilizer lets a pre-activation near zero amplify float32 rounding
    without bound from layer to layer, which says nothing about the kernels.
    """
    if dtype == np.float32 and rule[0] == "simple":
        rule = ("epsilon", 0.01)
    if rule[0] == "alphabeta" and rule[1] < 1:
        rule = ("alphabeta", 1.5)  # the kernels take any alpha (above); explain() refuses alpha < 1
    net, spec, X = random_network(seed, depth)
    X = X.astype(dtype)
    acts = naive.network_forward(spec[:-1], X.astype(np.float64))
    scores = acts[-1]
    target = scores.argmax(axis=1)
    R0 = np.zeros_like(scores)
    R0[np.arange(2), target] = scores[np.arange(2), target]
    expected = naive.network_lrp(spec[:-1], acts, R0, *rule)
    # explain the reference's target: float32 scores may rank a near-tie differently
    actual = net.explain(X, target=target, rule=rule[0], param=rule[1])
    assert actual.dtype == dtype
    assert relative_error(actual, expected) <= TOLERANCE[dtype]


@pytest.mark.parametrize("stride", [(1, 1), (2, 1)])
@pytest.mark.parametrize("rule, param", [("epsilon", 0.5), ("alphabeta", 2.0), ("ww", None),
                                         ("gamma", 0.25), ("zb", (-3.0, 3.0))])
@pytest.mark.parametrize("signed", [True, False])
def test_many_chunks_match_reference(rule, param, stride, signed):
    """Inputs large enough for the matrix-product kernels to split the
    output rows into several chunks, run in two phases (see kernels/conv.py)."""
    from lrpnb.kernels.conv import CHUNK_ELEMENTS

    rng = np.random.default_rng(8)
    X = rng.normal(size=(10, 41, 40, 8))
    X = X if signed else np.abs(X)
    layer = lrpnb.Convolution(rng.normal(size=(3, 3, 8, 4)), rng.normal(size=4), stride=stride)
    Y = layer.forward(X)
    rows_per_chunk = CHUNK_ELEMENTS // (Y.shape[2] * 72)
    assert Y.shape[0] * Y.shape[1] > 2 * rows_per_chunk  # at least three chunks
    R = rng.normal(size=Y.shape)
    name, value = lrpnb.rules.resolve(rule, param)
    expected = naive.conv_lrp(X, layer.W, layer.B, R, stride, name, value)
    assert relative_error(layer.relevance(X, Y, R, name, value), expected) <= 1e-10
    np.testing.assert_allclose(Y, naive.conv_forward(X, layer.W, layer.B, stride), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rule, param", [("epsilon", 0.5), ("alphabeta", 2.0), ("gamma", 0.25),
                                         ("ww", None), ("gradient", None)])
@pytest.mark.parametrize("stride", [(1, 1), (2, 2)])
def test_column_split_products_match_reference(rule, param, stride, monkeypatch):
    """Few output rows and many channels (VGG-16's deep layers at small
    batches): the products are split by output channels (forward, ratios)
    and by input channels (redistribution) as well."""
    from lrpnb.kernels import conv

    monkeypatch.setattr(conv, "MIN_SPLIT_COLUMNS", 8)  # split even these small layers
    rng = np.random.default_rng(11)
    X = rng.normal(size=(2, 9, 8, 24))
    W, B = rng.normal(size=(3, 3, 24, 32)), rng.normal(size=32)
    assert len(conv._column_groups(32, 1, 1)) > 1 and len(conv._column_groups(24, 9, 2)) > 1
    Y = conv.conv_forward(X, W, B, *stride)
    np.testing.assert_allclose(Y, naive.conv_forward(X, W, B, stride), rtol=1e-12, atol=1e-12)
    R = rng.normal(size=Y.shape)
    name, value = lrpnb.rules.resolve(rule, param)
    layer = lrpnb.Convolution(W, B, stride=stride)
    if name == "gradient":
        expected = naive.conv_lrp(X, W, B, R, stride, "ww", None)  # the naive adjoint, with W^2 shares
        actual = conv._transpose(X, W * W / (W * W).sum(axis=(0, 1, 2)), R, *stride)
    else:
        expected = naive.conv_lrp(X, W, B, R, stride, name, value)
        actual = layer.relevance(X, Y, R, name, value)
    assert relative_error(actual, expected) <= 1e-10


@pytest.mark.parametrize("rule, param", [("epsilon", 0.5), ("alphabeta", 2.0), ("zplus", None), ("gamma", 0.25),
                                         ("ww", None), ("gradient", None)])
@pytest.mark.parametrize("signed", [False, True])
def test_split_dense_products_match_reference(rule, param, signed, monkeypatch):
    """A dense layer with few samples and many units (VGG-16's classifier at
    small batches): the forward product is split along the inner dimension,
    the redistribution reads the weights' row blocks in place."""
    from lrpnb.kernels import conv

    monkeypatch.setattr(conv, "MIN_SPLIT_COLUMNS", 8)
    rng = np.random.default_rng(13)
    X = rng.normal(size=(3, 40))  # fewer samples than inputs: split along the inner dimension
    X = X if signed else np.abs(X)
    W, B = rng.normal(size=(40, 48)), rng.normal(size=48)
    assert len(conv._column_groups(48, 1, 1)) > 1
    layer = lrpnb.Linear(W, B)
    Y = layer.forward(X)
    np.testing.assert_allclose(Y, naive.dense_forward(X, W, B), rtol=1e-12, atol=1e-12)
    R = rng.normal(size=Y.shape)
    name, value = lrpnb.rules.resolve(rule, param)
    expected = R @ W.T if name == "gradient" else naive.dense_lrp(X, W, B, R, name, value)
    assert relative_error(layer.relevance(X, Y, R, name, value), expected) <= 1e-10


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rule, param", [("epsilon", 0.5), ("simple", None), ("zplus", None)])
def test_dense_layers_on_many_rows_match_reference(rule, param, dtype):
    """A dense layer on a transformer's tokens (many rows): the products run
    on blocks of rows read in place, the epsilon rule fused per block."""
    from lrpnb.kernels import conv

    if rule == "simple" and dtype == np.float32:
        pytest.skip("the simple rule's 1e-16 leaves float32 ratios of near-zero outputs to rounding")
    rng = np.random.default_rng(17)
    rows = 2 * conv.DENSE_TASK_ROWS + 37  # blocks of the task size and a short last one
    X, W, B = rng.normal(size=(rows, 24)), rng.normal(size=(24, 20)), rng.normal(size=20)
    assert len(conv._dense_row_blocks(X.reshape(rows, 1, 1, 24), W.reshape(1, 1, 24, 20))) == 3
    layer = lrpnb.Linear(W.astype(dtype), B.astype(dtype))
    Y = layer.forward(X.astype(dtype))
    check(Y, naive.dense_forward(X, W, B), dtype)
    R = rng.normal(size=Y.shape)
    name, value = lrpnb.rules.resolve(rule, param)
    check(layer.relevance(X.astype(dtype), Y, R.astype(dtype), name, value),
          naive.dense_lrp(X, W, B, R, name, value), dtype)


def test_results_do_not_depend_on_the_thread_count(monkeypatch):
    """The split comes from the layer's shape alone: 1 thread and 5 give
    bit-identical relevance, on a network whose products split by rows and
    by channels."""
    from lrpnb import kernels
    from lrpnb.kernels import conv

    monkeypatch.setattr(conv, "MIN_SPLIT_COLUMNS", 16)
    monkeypatch.setattr(conv, "CHUNK_ELEMENTS", 1 << 12)
    rng = np.random.default_rng(12)
    net = lrpnb.Network([lrpnb.Convolution(rng.normal(size=(3, 3, 3, 16)), rng.normal(size=16)), lrpnb.Rect(),
                         lrpnb.Convolution(rng.normal(size=(3, 3, 16, 32)) / 12, rng.normal(size=32)),
                         lrpnb.Rect(), lrpnb.MaxPool(), lrpnb.Flatten(),
                         lrpnb.Linear(rng.normal(size=(5 * 5 * 32, 10)) / 30, rng.normal(size=10))])
    X = rng.normal(size=(6, 14, 14, 3)).astype(np.float32)
    results = {}
    for threads in (1, 5):
        monkeypatch.setattr(kernels, "workers", lambda: threads)
        results[threads] = [net.explain(X, rule=rule, param=param)
                            for rule, param in (("epsilon", 0.01), ("alphabeta", 2.0), ("gradient", None))]
    for one, five in zip(results[1], results[5]):
        assert np.array_equal(one, five)


def test_threads_sharing_a_network_get_identical_results():
    """Passes running in several threads at once get the single-threaded
    results bit for bit (the BLAS thread limit is held while any runs)."""
    import concurrent.futures

    rng = np.random.default_rng(13)
    net = lrpnb.Network([lrpnb.Convolution(rng.normal(size=(3, 3, 8, 16)), rng.normal(size=16)), lrpnb.Rect(),
                         lrpnb.Flatten(), lrpnb.Linear(rng.normal(size=(6 * 6 * 16, 10)) / 24, rng.normal(size=10))])
    batches = [rng.normal(size=(n, 8, 8, 8)) for n in (3, 7, 16, 40)]
    expected = [net.explain(X, rule="epsilon", param=0.01) for X in batches]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        for _ in range(5):
            results = list(pool.map(lambda X: net.explain(X, rule="epsilon", param=0.01), batches * 3))
            for index, result in enumerate(results):
                assert np.array_equal(result, expected[index % len(batches)])

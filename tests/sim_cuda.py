"""The CUDA kernels under numba's CUDA simulator, against the CPU kernels.

Not collected by the normal test run: NUMBA_ENABLE_CUDASIM must be set before
numba is first imported, so tests/test_cuda.py runs this file in a pytest
process of its own with the simulator on.
"""
import os

import numpy as np
import pytest

assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"

from numba import cuda  # noqa: E402

import lrpnb  # noqa: E402
import lrpnb.training  # noqa: E402
from lrpnb.backends import CPU, backend  # noqa: E402
from lrpnb.explain import batch_parts  # noqa: E402
from lrpnb.targets import Target  # noqa: E402
from lrpnb.cuda.arrays import is_gpu_array  # noqa: E402

GPU = backend("cuda")
RULES = [("simple", None), ("epsilon", 0.1), ("alphabeta", 2.0), ("alphabeta", 1.0), ("flat", None),
         ("ww", None), ("zplus", None), ("gamma", 0.25), ("zb", (-2.0, 2.0)), ("gradient", None),
         ("deconvnet", None), ("guided_backprop", None)]
METHODS = ["sensitivity", "gradient_x_input"]
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


def layers():
    rng = np.random.default_rng(11)
    return {
        "conv": (lrpnb.Convolution(rng.normal(size=(2, 3, 2, 3)), rng.normal(size=3), stride=(1, 2)),
                 (2, 5, 6, 2)),
        "conv-strided": (lrpnb.Convolution(rng.normal(size=(3, 2, 1, 2)), rng.normal(size=2), stride=(2, 1)),
                         (1, 7, 4, 1)),
        "dense": (lrpnb.Linear(rng.normal(size=(5, 4)), rng.normal(size=4)), (3, 5)),
        "sumpool": (lrpnb.SumPool((2, 2), (1, 1)), (2, 4, 4, 2)),
        "maxpool": (lrpnb.MaxPool((2, 3), (1, 2)), (2, 4, 7, 2)),
        "rect": (lrpnb.Rect(), (2, 3, 3, 2)),
        "tanh": (lrpnb.Tanh(), (2, 5)),
        "softmax": (lrpnb.SoftMax(), (3, 4)),
        "conv-padded-dilated": (lrpnb.Convolution(rng.normal(size=(2, 2, 2, 3)), rng.normal(size=3),
                                                  padding=(1, 0, 2, 1), dilation=(2, 1)), (2, 4, 4, 2)),
        "conv-grouped": (lrpnb.Convolution(rng.normal(size=(3, 3, 1, 4)), rng.normal(size=4), padding=1,
                                           groups=2), (1, 4, 5, 2)),
        "maxpool-padded": (lrpnb.MaxPool((3, 3), (2, 2), padding=1), (2, 5, 5, 2)),
        "avgpool": (lrpnb.AveragePool((3, 2), (2, 1), padding=(1, 1, 0, 1)), (2, 5, 4, 2)),
        "avgpool-include-pad": (lrpnb.AveragePool((2, 2), (1, 2), padding=1, count_include_pad=True),
                                (1, 4, 5, 3)),
        "global-avgpool": (lrpnb.GlobalAveragePool(), (2, 3, 4, 3)),
        "sigmoid": (lrpnb.Sigmoid(), (2, 3, 2, 2)),
        "lrn": (lrpnb.LRN(3, 0.5, 0.75, 2.0), (2, 2, 3, 5)),
        "batchnorm": (lrpnb.BatchNorm(rng.normal(size=2), rng.normal(size=2), rng.normal(size=2),
                                      rng.random(2) + 0.5), (2, 3, 2, 2)),
    }


def inputs(shape, dtype, ties):
    rng = np.random.default_rng(5)
    X = rng.integers(-2, 3, size=shape) if ties else rng.normal(size=shape)
    return X.astype(dtype)


def close(actual, expected, dtype):
    assert actual.dtype == expected.dtype == dtype
    assert actual.shape == expected.shape
    scale = max(np.abs(expected).max(), 1e-300)
    assert np.abs(actual.astype(np.float64) - expected).max() / scale <= TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("name", sorted(layers()))
def test_layer_kernels_match_cpu(name, ties, dtype):
    layer, shape = layers()[name]
    X = inputs(shape, dtype, ties)
    Y = layer.forward(X, CPU)
    Y_gpu = layer.forward(cuda.to_device(X), GPU)
    close(Y_gpu.copy_to_host(), Y, dtype)
    R = np.random.default_rng(3).normal(size=Y.shape).astype(dtype)
    for rule, param in RULES:
        name, value = lrpnb.rules.resolve(rule, param)
        expected = layer.relevance(X, Y, R, name, value, CPU)
        actual = layer.relevance(cuda.to_device(X), cuda.to_device(Y), cuda.to_device(R), name, value, GPU)
        close(actual.copy_to_host(), expected, dtype)


def small_net():
    rng = np.random.default_rng(2)
    return lrpnb.Network([
        lrpnb.Convolution(rng.normal(size=(3, 3, 1, 3)) / 3, rng.normal(size=3) / 10), lrpnb.Rect(),
        lrpnb.SumPool((2, 2), (2, 2)), lrpnb.Convolution(rng.normal(size=(2, 2, 3, 4)) / 3, np.zeros(4)),
        lrpnb.Rect(), lrpnb.MaxPool((1, 1), (1, 1)), lrpnb.Flatten(),
        lrpnb.Linear(rng.normal(size=(16, 3)) / 4, rng.normal(size=3) / 10), lrpnb.SoftMax()])


@pytest.mark.parametrize("rule, param", RULES + [(method, None) for method in METHODS])
def test_network_on_the_gpu_matches_cpu(rule, param):
    net = small_net()
    X = np.random.default_rng(4).normal(size=(2, 8, 8, 1))
    expected = net.explain(X, rule=rule, param=param)
    assert net.to("cuda") is net and net.device == "cuda"
    actual = net.explain(X, rule=rule, param=param)
    assert isinstance(actual, np.ndarray)
    close(actual, expected, np.float64)
    assert net.to("cpu").device == "cpu"
    np.testing.assert_array_equal(net.explain(X, rule=rule, param=param), expected)


def test_gpu_arrays_stay_on_the_gpu():
    net = small_net().drop_softmax_output_layer().to("cuda")
    cpu = small_net().drop_softmax_output_layer()
    X = np.random.default_rng(4).normal(size=(2, 8, 8, 1)).astype(np.float32)
    on_device = cuda.to_device(X)
    R = net.explain(on_device, rule="epsilon", param=0.01)
    assert is_gpu_array(R) and not isinstance(R, np.ndarray)
    close(R.copy_to_host(), cpu.explain(X, rule="epsilon", param=0.01), np.float32)
    # the toolbox's sequence: forward, then lrp from the score of class 1
    Y = net.forward(on_device)
    assert is_gpu_array(Y)
    start = np.zeros(Y.shape, np.float32)
    start[:, 1] = Y.copy_to_host()[:, 1]
    relevance = net.lrp(cuda.to_device(start), "epsilon", 0.01)
    assert is_gpu_array(relevance)
    close(relevance.copy_to_host(), cpu.explain(X, target=1, rule="epsilon", param=0.01), np.float32)
    np.testing.assert_array_equal(net.lrp(start, "epsilon", 0.01), relevance.copy_to_host())


def test_nan_on_the_gpu_is_refused():
    net = small_net().to("cuda")
    X = np.zeros((3, 8, 8, 1))
    X[2, 1, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values \(first in sample 2\)"):
        net.explain(cuda.to_device(X))


def test_composites_and_many_targets_on_the_gpu():
    cpu = small_net()
    gpu = small_net().to("cuda")
    X = np.random.default_rng(6).normal(size=(2, 8, 8, 1))
    for composite in (lrpnb.EpsilonGammaBox(low=-3.0, high=3.0), lrpnb.formula_type(102, layer_index=1)):
        close(gpu.explain(X, composite=composite), cpu.explain(X, composite=composite), np.float64)
    close(gpu.explain(X, target="all", rule="epsilon", param=0.1),
          cpu.explain(X, target="all", rule="epsilon", param=0.1), np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weight_gradients_match_cpu(dtype):
    net = small_net().drop_softmax_output_layer()
    X = np.random.default_rng(6).normal(size=(3, 8, 8, 1)).astype(dtype)
    labels = np.array([0, 2, 1])

    def loss(scores):
        return lrpnb.training.softmax_cross_entropy(scores, labels)

    value, expected = net.parameter_gradients(X, loss)
    gpu_value, actual = net.to("cuda").parameter_gradients(X, loss)
    assert gpu_value == pytest.approx(value, rel=TOLERANCE[dtype])
    for (_, dW, dB), (_, gW, gB) in zip(expected, actual):
        close(gW, dW, dtype)
        close(gB, dB, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_tiled_matrix_product(transpose_b, dtype):
    """The shared-memory GEMM used where CuPy is missing: shapes that are no
    multiple of the tile, so the edges of the tiles are exercised."""
    from lrpnb.cuda.products import TILE, gemm_tiled

    rng = np.random.default_rng(9)
    A = rng.normal(size=(TILE + 3, 2 * TILE + 5)).astype(dtype)
    B = rng.normal(size=(A.shape[1], TILE - 3)).astype(dtype)
    B_given = np.ascontiguousarray(B.T) if transpose_b else B
    out = cuda.device_array((A.shape[0], B.shape[1]), dtype=dtype)
    gemm_tiled(cuda.to_device(A), cuda.to_device(B_given), out, transpose_b)
    close(out.copy_to_host(), A @ B, dtype)


def test_layers_split_into_sample_chunks_match_cpu(monkeypatch):
    """A workspace smaller than the batch: the convolution kernels run over
    several chunks of samples (the last one shorter)."""
    from lrpnb.cuda import conv as gpu_conv

    monkeypatch.setattr(gpu_conv, "WORKSPACE", 2 * 4 * 4 * 2 * 3 * 2)  # two samples' signed patches
    rng = np.random.default_rng(10)
    layer = lrpnb.Convolution(rng.normal(size=(2, 3, 2, 3)), rng.normal(size=3), stride=(1, 1))
    X = rng.normal(size=(5, 5, 6, 2))
    Y = layer.forward(X, CPU)
    close(layer.forward(cuda.to_device(X), GPU).copy_to_host(), Y, np.float64)
    R = rng.normal(size=Y.shape)
    for rule, param in RULES:
        name, value = lrpnb.rules.resolve(rule, param)
        actual = layer.relevance(cuda.to_device(X), cuda.to_device(Y), cuda.to_device(R), name, value, GPU)
        close(actual.copy_to_host(), layer.relevance(X, Y, R, name, value, CPU), np.float64)


def test_many_targets_stay_on_the_device():
    from lrpnb.cuda.arrays import repeat

    X = np.arange(24.0).reshape(3, 2, 4)
    np.testing.assert_array_equal(repeat(cuda.to_device(X), 3).copy_to_host(), np.repeat(X, 3, axis=0))


def test_a_batch_larger_than_the_gpu_memory_is_split(monkeypatch):
    """With little free device memory, explain runs the batch in parts and
    joins them on the device: the same relevance, for every kind of target."""
    from lrpnb.cuda import arrays

    net = small_net()
    X = np.random.default_rng(7).normal(size=(5, 8, 8, 1))
    expected = {str(t): net.explain(X, target=t, rule="epsilon", param=0.1)
                for t in (None, np.array([0, 2, 1, 1, 0]), "all")}
    gpu = small_net().to("cuda")
    per_sample = 8 * sum(int(np.prod(s[1:])) for s in [X.shape] + gpu.output_shapes(X.shape))
    monkeypatch.setattr(arrays, "free_memory", lambda: 2 * 8 * per_sample)  # a part or two of samples
    assert len(batch_parts(gpu, cuda.to_device(X), len(gpu.layers) - 1, Target.parse(None))) > 1
    for t in (None, np.array([0, 2, 1, 1, 0]), "all"):
        relevance, scores = gpu.explain(X, target=t, rule="epsilon", param=0.1, return_scores=True)
        close(relevance, expected[str(t)], np.float64)
        assert scores.shape == (5, 3)
    on_device = gpu.explain(cuda.to_device(X), rule="epsilon", param=0.1)
    assert is_gpu_array(on_device)
    close(on_device.copy_to_host(), expected["None"], np.float64)
    with pytest.raises(ValueError, match="target has 2 entries for 5 samples"):
        gpu.explain(X, target=np.array([0, 1]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_perturbation_kernels_match_cpu(dtype):
    rng = np.random.default_rng(3)
    R = rng.normal(size=(2, 5, 7, 2)).astype(dtype)
    # sums: the CPU's fastmath may reorder them (last bits)
    np.testing.assert_allclose(GPU.perturb.region_relevance(cuda.to_device(R), 2, 3).copy_to_host(),
                               CPU.perturb.region_relevance(R, 2, 3), rtol=1e-12)
    X, V = rng.normal(size=(2, 5, 7, 2)).astype(dtype), rng.normal(size=(2, 5, 7, 2)).astype(dtype)
    rank = np.stack([rng.permutation(9) for _ in range(2)]).astype(np.int64)
    expected = CPU.perturb.perturbed_copies(X, V, rank, 2, 3, 4, 3, 9)
    actual = GPU.perturb.perturbed_copies(cuda.to_device(X), cuda.to_device(V), cuda.to_device(rank),
                                          2, 3, 4, 3, 9).copy_to_host()
    np.testing.assert_array_equal(actual, expected)
    sums = GPU.activations.sample_sums(cuda.to_device(R)).copy_to_host()
    np.testing.assert_allclose(sums, CPU.activations.sample_sums(R), rtol=1e-12)


def test_perturbation_curves_and_layer_sums_on_the_gpu():
    from lrpnb import evaluate

    cpu = small_net()
    gpu = small_net().to("cuda")
    X = np.random.default_rng(4).normal(size=(3, 8, 8, 1))
    R = cpu.explain(X, rule="epsilon", param=0.1)
    for order, replace in (("morf", "uniform"), ("random", "blur")):
        expected = evaluate.perturbation_curve(cpu, X, R, region=2, steps=5, order=order, replace=replace)
        actual = evaluate.perturbation_curve(gpu, cuda.to_device(X), cuda.to_device(R), region=2, steps=5,
                                             order=order, replace=replace, batch_size=4)
        np.testing.assert_allclose(actual, expected, rtol=1e-10)
    expected = cpu.explain(X, rule="epsilon", param=0.1, return_layer_sums=True)[1]
    actual = gpu.explain(X, rule="epsilon", param=0.1, return_layer_sums=True)[1]
    np.testing.assert_allclose(actual, expected, rtol=1e-10)


def graph_net():
    rng = np.random.default_rng(12)
    conv = lambda d, n: lrpnb.Convolution(rng.normal(size=(3, 3, d, n)) / 3, rng.normal(size=n) / 10,  # noqa: E731
                                          padding=1)
    return lrpnb.Network([
        lrpnb.Node("stem", conv(1, 3), "input"), lrpnb.Node("relu", lrpnb.Rect(), "stem"),
        lrpnb.Node("branch", conv(3, 3), "relu"), lrpnb.Node("join", lrpnb.Add(), ["branch", "relu"]),
        lrpnb.Node("cat", lrpnb.Concat(), ["join", "relu"]), lrpnb.Node("pool", lrpnb.GlobalAveragePool(), "cat"),
        lrpnb.Node("flat", lrpnb.Flatten(), "pool"),
        lrpnb.Node("fc", lrpnb.Linear(rng.normal(size=(6, 3)), rng.normal(size=3)), "flat")])


@pytest.mark.parametrize("rule, param", [("epsilon", 0.1), ("zplus", None), ("gradient", None)])
def test_graph_network_on_the_gpu_matches_cpu(rule, param):
    X = np.random.default_rng(4).normal(size=(2, 5, 4, 1))
    expected, kept = graph_net().explain(X, rule=rule, param=param, layers=["join"])
    actual, kept_gpu = graph_net().to("cuda").explain(X, rule=rule, param=param, layers=["join"])
    close(actual, expected, np.float64)
    close(kept_gpu["join"], kept["join"], np.float64)


# ---------------------------------------------------------------- products and LayerNorm
def product_and_norm_layers():
    from lrpnb.layers import LayerNorm, Scale

    rng = np.random.default_rng(13)
    return {
        "scale": (Scale(rng.normal(size=3)), (2, 3, 2, 3)),
        "scale-scalar": (Scale(-0.5), (3, 5)),
        "layernorm": (LayerNorm(rng.normal(size=3), rng.normal(size=3), eps=1e-3), (2, 3, 2, 3)),
        "layernorm-tokens": (LayerNorm(rng.normal(size=4) + 1, rng.normal(size=4), eps=1e-5), (2, 3, 4)),
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("name", sorted(product_and_norm_layers()))
def test_product_and_norm_kernels_match_cpu(name, ties, dtype):
    layer, shape = product_and_norm_layers()[name]
    X = inputs(shape, dtype, ties)
    Y = layer.forward(X, CPU)
    close(layer.forward(cuda.to_device(X), GPU).copy_to_host(), Y, dtype)
    R = np.random.default_rng(3).normal(size=Y.shape).astype(dtype)
    for rule, param in RULES:
        chosen = lrpnb.rules.Rule(rule, param)
        expected = layer.relevance(X, Y, R, chosen, backend=CPU)
        actual = layer.relevance(cuda.to_device(X), cuda.to_device(Y), cuda.to_device(R), chosen, backend=GPU)
        close(actual.copy_to_host(), expected, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("gate, gate_shape", [(1, (2, 1, 1, 3)), (0, (2, 4, 2, 3)), (1, (3, 5))])
def test_mul_kernels_match_cpu(gate, gate_shape, dtype):
    from lrpnb.layers import Mul

    rng = np.random.default_rng(14)
    x = rng.normal(size=(gate_shape[0],) + ((4, 2, 3) if len(gate_shape) == 4 else (5,))).astype(dtype)
    g = rng.random(gate_shape).astype(dtype)
    pair = [x, g] if gate == 1 else [g, x]
    layer = Mul(gate)
    Y = layer.forward(pair, CPU)
    on_gpu = [cuda.to_device(a) for a in pair]
    close(layer.forward(on_gpu, GPU).copy_to_host(), Y, dtype)
    R = rng.normal(size=Y.shape).astype(dtype)
    for rule in ("epsilon", "uniform", "constant_gate", "gradient"):
        chosen = lrpnb.rules.Rule(rule, 0.1 if rule == "epsilon" else None)
        expected = layer.relevance(pair, Y, R, chosen, backend=CPU)
        actual = layer.relevance(on_gpu, cuda.to_device(Y), cuda.to_device(R), chosen, backend=GPU)
        for a, e in zip(actual, expected):
            if e.any():
                close(a.copy_to_host(), e, dtype)
            else:  # the gate held constant gets zeros
                np.testing.assert_array_equal(a.copy_to_host(), e)


def gated_net():
    from lrpnb.layers import LayerNorm, Mul, Scale

    rng = np.random.default_rng(15)
    return lrpnb.Network([
        lrpnb.Node("conv", lrpnb.Convolution(rng.normal(size=(3, 3, 1, 3)) / 3, rng.normal(size=3) / 10, padding=1),
                   "input"),
        lrpnb.Node("relu", lrpnb.Rect(), "conv"), lrpnb.Node("squeeze", lrpnb.GlobalAveragePool(), "relu"),
        lrpnb.Node("sig", lrpnb.Sigmoid(), "squeeze"), lrpnb.Node("gated", Mul(gate=1), ["relu", "sig"]),
        lrpnb.Node("scale", Scale(rng.normal(size=3)), "gated"),
        lrpnb.Node("norm", LayerNorm(rng.normal(size=3) + 1, rng.normal(size=3)), "scale"),
        lrpnb.Node("flat", lrpnb.Flatten(), "norm"),
        lrpnb.Node("fc", lrpnb.Linear(rng.normal(size=(60, 3)), rng.normal(size=3)), "flat")])


@pytest.mark.parametrize("rule, param", [("epsilon", 0.1), ("uniform", None), ("gradient", None)])
def test_gated_network_on_the_gpu_matches_cpu(rule, param):
    X = np.random.default_rng(4).normal(size=(2, 5, 4, 1))
    expected, kept = gated_net().explain(X, rule=rule, param=param, layers=["sig"])
    actual, kept_gpu = gated_net().to("cuda").explain(X, rule=rule, param=param, layers=["sig"])
    close(actual, expected, np.float64)
    close(kept_gpu["sig"], kept["sig"], np.float64)


# ---------------------------------------------------------------- pools in ceil mode
def ceil_pools():
    """Pools whose last windows reach past the end padding (and a 1-D one)."""
    return {
        "maxpool-ceil": (lrpnb.MaxPool((3, 3), (2, 2), padding=1, ceil_mode=True), (2, 6, 7, 2)),
        "maxpool-ceil-last-dropped": (lrpnb.MaxPool((2, 2), (2, 2), padding=1, ceil_mode=True), (2, 5, 5, 2)),
        "maxpool-1d": (lrpnb.MaxPool((1, 4), (1, 3), padding=(0, 0, 1, 1), ceil_mode=True), (2, 1, 12, 3)),
        "avgpool-ceil": (lrpnb.AveragePool((3, 2), (2, 3), padding=(1, 0, 0, 1), ceil_mode=True), (2, 7, 6, 2)),
        "avgpool-ceil-include-pad": (lrpnb.AveragePool((3, 3), (2, 2), padding=1, count_include_pad=True,
                                                       ceil_mode=True), (1, 6, 6, 3)),
        "avgpool-ceil-stride-above-kernel": (lrpnb.AveragePool((2, 3), (3, 4), padding=(1, 1, 0, 0),
                                                               count_include_pad=True, ceil_mode=True), (2, 8, 9, 2)),
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("name", sorted(ceil_pools()))
def test_ceil_pool_kernels_match_cpu(name, ties, dtype):
    layer, shape = ceil_pools()[name]
    X = inputs(shape, dtype, ties)
    Y = layer.forward(X, CPU)
    close(layer.forward(cuda.to_device(X), GPU).copy_to_host(), Y, dtype)
    R = np.random.default_rng(3).normal(size=Y.shape).astype(dtype)
    for rule, param in RULES:
        name, value = lrpnb.rules.resolve(rule, param)
        expected = layer.relevance(X, Y, R, name, value, CPU)
        actual = layer.relevance(cuda.to_device(X), cuda.to_device(Y), cuda.to_device(R), name, value, GPU)
        close(actual.copy_to_host(), expected, dtype)


# ---------------------------------------------------------------- element-wise activations of the model zoo
def zoo_activations():
    from lrpnb.layers import GELU, Clip, HardSigmoid, HardSwish, LeakyReLU, SiLU

    return {"relu6": Clip(0, 6), "clip": Clip(-1.5, 2.25), "hardsigmoid": HardSigmoid(),
            "hardsigmoid-torch": HardSigmoid(1 / 6, 0.5), "hardswish": HardSwish(), "silu": SiLU(),
            "leakyrelu": LeakyReLU(0.1), "gelu": GELU(), "gelu-tanh": GELU("tanh")}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(zoo_activations()))
def test_zoo_activation_kernels_match_cpu(name, dtype):
    layer = zoo_activations()[name]
    kinks = [-6.0, -3.0, -2.5, -1.5, 0.0, 2.25, 2.5, 3.0, 6.0, -40.0, 40.0, 1e4]
    X = np.concatenate([kinks, np.random.default_rng(4).normal(scale=3, size=36)]).astype(dtype).reshape(2, 2, 3, 4)
    Y = layer.forward(X, CPU)
    Y_gpu = layer.forward(cuda.to_device(X), GPU)
    assert is_gpu_array(Y_gpu)
    close(Y_gpu.copy_to_host(), Y, dtype)
    R = np.random.default_rng(3).normal(size=Y.shape).astype(dtype)
    for rule, param in RULES:
        name, value = lrpnb.rules.resolve(rule, param)
        expected = layer.relevance(X, Y, R, name, value, CPU)
        actual = layer.relevance(cuda.to_device(X), cuda.to_device(Y), cuda.to_device(R), name, value, GPU)
        close(actual.copy_to_host(), expected, dtype)
        if rule in ("gradient", "deconvnet"):
            # the piecewise linear slopes exactly, at the kinks too
            assert np.array_equal(actual.copy_to_host() == 0, expected == 0)


# ---------------------------------------------------------------- transposed convolution
def conv_transposes():
    """Transposed convolutions: strided with output padding, and grouped,
    dilated, asymmetrically padded with output padding past the end."""
    from lrpnb.layers import ConvTranspose

    rng = np.random.default_rng(13)
    return {
        "conv-transpose": (ConvTranspose(rng.normal(size=(3, 3, 2, 3)), rng.normal(size=2), stride=2, padding=1,
                                         output_padding=1), (2, 3, 4, 3)),
        "conv-transpose-grouped": (ConvTranspose(rng.normal(size=(2, 3, 2, 4)), rng.normal(size=4), stride=(3, 2),
                                                 padding=(1, 0, 0, 2), output_padding=(2, 1), dilation=(1, 2),
                                                 groups=2), (1, 3, 3, 4)),
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("name", sorted(conv_transposes()))
def test_conv_transpose_kernels_match_cpu(name, ties, dtype):
    layer, shape = conv_transposes()[name]
    X = inputs(shape, dtype, ties)
    Y = layer.forward(X, CPU)
    close(layer.forward(cuda.to_device(X), GPU).copy_to_host(), Y, dtype)
    R = np.random.default_rng(3).normal(size=Y.shape).astype(dtype)
    for rule, param in RULES:
        rule_name, value = lrpnb.rules.resolve(rule, param)
        expected = layer.relevance(X, Y, R, rule_name, value, CPU)
        actual = layer.relevance(cuda.to_device(X), cuda.to_device(Y), cuda.to_device(R), rule_name, value, GPU)
        close(actual.copy_to_host(), expected, dtype)


# ---------------------------------------------------------------- depthwise convolutions
def depthwise_convolutions():
    """Depthwise convolutions (lrpnb/cuda/depthwise.py): strided and padded,
    and with a channel multiplier of 2, dilated and asymmetrically padded."""
    rng = np.random.default_rng(17)
    return {
        "depthwise": (lrpnb.Convolution(rng.normal(size=(3, 3, 1, 3)), rng.normal(size=3), stride=2, padding=1,
                                        groups=3), (2, 5, 6, 3)),
        "depthwise-multiplier": (lrpnb.Convolution(rng.normal(size=(2, 3, 1, 6)), rng.normal(size=6), stride=(1, 2),
                                                   padding=(1, 0, 2, 1), dilation=(2, 1), groups=3), (1, 5, 5, 3)),
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("name", sorted(depthwise_convolutions()))
def test_depthwise_kernels_match_cpu(name, ties, dtype):
    layer, shape = depthwise_convolutions()[name]
    assert layer.depthwise
    X = inputs(shape, dtype, ties)
    Y = layer.forward(X, CPU)
    close(layer.forward(cuda.to_device(X), GPU).copy_to_host(), Y, dtype)
    R = np.random.default_rng(3).normal(size=Y.shape).astype(dtype)
    # bounds off the integer inputs of ``ties``: an input at its bound makes
    # z^B's three passes cancel, in every path alike
    bounds = [("zb", (-2.5, 2.5)), ("zb", (np.array([-1.5, -2.5, -0.5]), np.array([1.5, 2.5, 0.5])))]
    for rule, param in [rule for rule in RULES if rule[0] != "zb"] + bounds:
        rule_name, value = lrpnb.rules.resolve(rule, param)
        expected = layer.relevance(X, Y, R, rule_name, value, CPU)
        actual = layer.relevance(cuda.to_device(X), cuda.to_device(Y), cuda.to_device(R), rule_name, value, GPU)
        close(actual.copy_to_host(), expected, dtype)


# ---------------------------------------------------------------- token tensors, RMSNorm, Linear on tokens, Scale tables
def token_layers():
    """(layer, input shape, whether the input is token ids) of
    lrpnb/cuda/tokens.py, RMSNorm (lrpnb/cuda/norm.py), Linear on (N, T, m)
    and Scale by a (T, d) table."""
    from lrpnb.layers import Bias, Embedding, Linear, Rearrange, Reshape, RMSNorm, Scale

    rng = np.random.default_rng(16)
    return {
        "embedding": (Embedding(rng.normal(size=(7, 5))), (2, 9), True),
        "rearrange": (Rearrange(np.array([0, 2, 4, 5, -1, 5, 5, 1, 3, 3]), (2, 5)), (3, 3, 2), False),
        "reshape": (Reshape((2, 6)), (2, 3, 4), False),
        "bias": (Bias(rng.normal(size=(3, 4))), (2, 2, 3, 4), False),
        "bias-scalar": (Bias(0.5), (3, 5), False),
        "rmsnorm": (RMSNorm(rng.normal(size=4) + 1, eps=1e-5), (2, 3, 4), False),
        "linear-tokens": (Linear(rng.normal(size=(4, 3)), rng.normal(size=3)), (2, 5, 4), False),
        "scale-table": (Scale(rng.normal(size=(3, 4))), (2, 2, 3, 4), False),
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(token_layers()))
def test_token_kernels_match_cpu(name, dtype):
    layer, shape, ids = token_layers()[name]
    X = (np.random.default_rng(6).integers(0, 7, size=shape) if ids else inputs(shape, dtype, False)).astype(dtype)
    Y = layer.forward(X, CPU)
    close(layer.forward(cuda.to_device(X), GPU).copy_to_host(), Y, dtype)
    R = np.random.default_rng(3).normal(size=Y.shape).astype(dtype)
    for rule, param in RULES:
        chosen = lrpnb.rules.Rule(rule, param)
        if rule == "zb" and name == "linear-tokens":
            chosen = lrpnb.rules.Rule("zb", (np.full(4, -2.0), 2.0))
        expected = layer.relevance(X, Y, R, chosen, backend=CPU)
        actual = layer.relevance(cuda.to_device(X), cuda.to_device(Y), cuda.to_device(R), chosen, backend=GPU)
        close(np.asarray(GPU.to_host(actual)), expected, dtype)


def test_embedding_checks_ids_on_the_gpu():
    from lrpnb.layers import Embedding

    with pytest.raises(ValueError, match=r"Embedding: token id 7 \(sample 0, position 1\)"):
        Embedding(np.ones((7, 2))).forward(cuda.to_device(np.array([[1.0, 7.0]])), GPU)


# ---------------------------------------------------------------- attention: MatMul and AttentionSoftmax
ATTENTION_RULES = [("uniform", None), ("uniform", 1e-3), ("epsilon", 0.1), ("constant_gate", None), ("simple", None),
                   ("gradient", None)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("gate", [None, 0, 1])
@pytest.mark.parametrize("shapes", [((2, 3, 4, 5), (2, 3, 5, 6)), ((3, 4, 2), (3, 2, 5))])
def test_matmul_kernels_match_cpu(shapes, gate, dtype):
    from lrpnb.layers import MatMul

    rng = np.random.default_rng(17)
    pair = [(rng.random(shape) + 0.5).astype(dtype) for shape in shapes]
    layer = MatMul(gate)
    Y = layer.forward(pair, CPU)
    on_gpu = [cuda.to_device(a) for a in pair]
    close(layer.forward(on_gpu, GPU).copy_to_host(), Y, dtype)
    R = rng.normal(size=Y.shape).astype(dtype)
    for rule, param in ATTENTION_RULES:
        chosen = lrpnb.rules.Rule(rule, param)
        expected = layer.relevance(pair, Y, R, chosen, backend=CPU)
        actual = layer.relevance(on_gpu, cuda.to_device(Y), cuda.to_device(R), chosen, backend=GPU)
        for a, e in zip(actual, expected):
            if e.any():
                close(a.copy_to_host(), e, dtype)
            else:  # the gate held constant gets zeros
                np.testing.assert_array_equal(a.copy_to_host(), e)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_attention_softmax_kernels_match_cpu(dtype):
    from lrpnb.layers import AttentionSoftmax

    X = np.random.default_rng(18).normal(size=(2, 3, 4, 5)) * 2
    X[0, 1, 2, [1, 3]] = -np.inf  # an additive -inf mask: probability 0, relevance 0
    X = X.astype(dtype)
    layer = AttentionSoftmax()
    Y = layer.forward(X, CPU)
    close(layer.forward(cuda.to_device(X), GPU).copy_to_host(), Y, dtype)
    R = np.random.default_rng(19).normal(size=Y.shape).astype(dtype)
    for rule, param in ATTENTION_RULES:
        chosen = lrpnb.rules.Rule(rule, param)
        expected = layer.relevance(X, Y, R, chosen, backend=CPU)
        actual = layer.relevance(cuda.to_device(X), cuda.to_device(Y), cuda.to_device(R), chosen, backend=GPU)
        close(actual.copy_to_host(), expected, dtype)
        assert np.all(actual.copy_to_host()[0, 1, 2, [1, 3]] == 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (False, True), (True, False)])
def test_batched_tiled_matrix_product(transpose_a, transpose_b, dtype):
    """The shared-memory GEMM over a stack of matrices used where CuPy is
    missing: shapes that are no multiple of the tile, either factor transposed."""
    from lrpnb.cuda.attention import _batched_gemm_tiled
    from lrpnb.cuda.products import TILE

    rng = np.random.default_rng(20)
    A = rng.normal(size=(2, TILE + 3, TILE + 5)).astype(dtype)
    B = rng.normal(size=(2, TILE + 5, TILE - 3)).astype(dtype)
    A_given = np.ascontiguousarray(A.transpose(0, 2, 1)) if transpose_a else A
    B_given = np.ascontiguousarray(B.transpose(0, 2, 1)) if transpose_b else B
    out = cuda.device_array((2, A.shape[1], B.shape[2]), dtype=dtype)
    _batched_gemm_tiled(cuda.to_device(A_given), cuda.to_device(B_given), out, transpose_a, transpose_b)
    close(out.copy_to_host(), A @ B, dtype)


def attention_net():
    """Self-attention of an input (N, 4, 4) with itself, then a dense head."""
    from lrpnb.layers import AttentionSoftmax, MatMul

    rng = np.random.default_rng(21)
    return lrpnb.Network([
        lrpnb.Node("scores", MatMul(), ["input", "input"]),
        lrpnb.Node("probs", AttentionSoftmax(), "scores"),
        lrpnb.Node("context", MatMul(gate=0), ["probs", "input"]),
        lrpnb.Node("flat", lrpnb.Flatten(), "context"),
        lrpnb.Node("fc", lrpnb.Linear(rng.normal(size=(16, 3)), rng.normal(size=3)), "flat")])


@pytest.mark.parametrize("rule, param", [("uniform", 1e-9), ("constant_gate", None), ("gradient", None)])
def test_attention_network_on_the_gpu_matches_cpu(rule, param):
    X = np.random.default_rng(22).normal(size=(2, 4, 4))
    expected, kept = attention_net().explain(X, rule=rule, param=param, layers=["probs"])
    actual, kept_gpu = attention_net().to("cuda").explain(X, rule=rule, param=param, layers=["probs"])
    close(actual, expected, np.float64)
    close(kept_gpu["probs"], kept["probs"], np.float64)


def test_several_inputs_on_the_gpu_match_cpu(monkeypatch):
    """Token ids and a second input, the second not explained; logits (N, T, V) explained at a position;
    numpy and GPU arrays in a dict, answered in kind; a batch split to fit the device."""
    from lrpnb.cuda import arrays
    from lrpnb.layers import Embedding

    rng = np.random.default_rng(23)
    E, W, B = rng.normal(size=(6, 4)), rng.normal(size=(4, 6)), rng.normal(size=6)

    def net():
        return lrpnb.Network([lrpnb.Node("embed", Embedding(E), "ids"),
                              lrpnb.Node("sum", lrpnb.Add(), ["embed", "extra"]),
                              lrpnb.Node("lm", lrpnb.Linear(W, B), "sum")], inputs=["ids", "extra"], explained="ids")

    cpu, gpu = net(), net().to("cuda")
    X = {"ids": np.random.default_rng(24).integers(0, 6, size=(3, 5)),
         "extra": np.random.default_rng(25).normal(size=(3, 5, 4))}
    for dtype in (np.float64, np.float32):
        expected = cpu.explain(X, target=np.array([1, 2, 3]), position=2, dtype=dtype, composite=lrpnb.AttnLRP())
        actual = gpu.explain(X, target=np.array([1, 2, 3]), position=2, dtype=dtype, composite=lrpnb.AttnLRP())
        assert set(actual) == {"ids"}
        close(actual["ids"], expected["ids"], dtype)
    on_device = {"ids": cuda.to_device(X["ids"].astype(np.float64)), "extra": cuda.to_device(X["extra"])}
    answer = gpu.explain(on_device, rule="epsilon", param=0.01)
    assert is_gpu_array(answer["ids"])
    expected = cpu.explain(X, rule="epsilon", param=0.01)
    close(answer["ids"].copy_to_host(), expected["ids"], np.float64)
    monkeypatch.setattr(arrays, "free_memory", lambda: 4000)  # a sample or two at a time
    assert len(batch_parts(gpu, [on_device["ids"], on_device["extra"]], 3, Target.parse(None))) > 1
    close(gpu.explain(X, rule="epsilon", param=0.01)["ids"], expected["ids"], np.float64)

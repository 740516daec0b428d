"""Scale, Mul (of two activations) and LayerNorm: forward passes against numpy
(and torch where installed), every rule against tests/naive.py, conservation,
the choice of the gate rule per node, and the lrpnb format's round trip."""
import numpy as np
import pytest

import lrpnb
from conftest import close, normal
import naive
from lrpnb.composites import Composite
from lrpnb.layers import GlobalAveragePool, LayerNorm, Mul, Scale
from lrpnb.network import Node
from lrpnb.rules import Rule

LRP_RULES = [("simple", None), ("epsilon", 0.1), ("alphabeta", 2.0), ("alphabeta", 1.0), ("zplus", None),
             ("gamma", 0.25), ("zb", (np.array([-3.0, -2.0, -1.0, -2.5, -1.5]), 2.5)), ("flat", None), ("ww", None)]


# ---------------------------------------------------------------- Scale
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("per_channel", [True, False])
def test_scale_forward_and_every_rule_match_the_reference(dtype, per_channel):
    rng = np.random.default_rng(1)
    s = normal(rng, 5) if per_channel else np.array(-1.5)
    X = normal(rng, 2, 3, 4, 5, dtype=dtype)
    X[0, 0, 0, :2] = 0  # z = 0: every rule gives 0 there
    layer = Scale(s)
    Y = layer.forward(X)
    close(Y, naive.scale_forward(X.astype(np.float64), s), dtype)
    R = normal(rng, *Y.shape, dtype=dtype)
    for rule, param in LRP_RULES:
        actual = layer.relevance(X, Y, R, Rule(rule, param))
        close(actual, naive.scale_lrp(X.astype(np.float64), s, R.astype(np.float64), rule,
                                      Rule(rule, param).param), dtype)
    close(layer.relevance(X, Y, R, "gradient"), R.astype(np.float64) * s, dtype)


def test_scale_passes_relevance_but_for_the_stabilizer():
    rng = np.random.default_rng(2)
    X, s = normal(rng, 3, 2, 2, 4), normal(rng, 4)
    layer = Scale(s)
    Y = layer.forward(X)
    R = normal(rng, *Y.shape)
    z = X * s
    np.testing.assert_allclose(layer.relevance(X, Y, R, "epsilon", 1e-9), R, rtol=1e-6)
    np.testing.assert_array_equal(layer.relevance(X, Y, R, "flat"), R)
    # z+ keeps the positive contributions only: where x s < 0 nothing passes
    zplus = layer.relevance(X, Y, R, "zplus")
    assert np.all(zplus[z < 0] == 0)
    np.testing.assert_allclose(zplus[z > 0], (R * z / (z + 1e-6))[z > 0], rtol=1e-12)


def test_scale_checks_its_arguments():
    with pytest.raises(ValueError, match="Scale: scale must hold one value or one per channel"):
        Scale([])
    with pytest.raises(ValueError, match="Scale: scale contains NaN"):
        Scale([1.0, np.nan])
    with pytest.raises(ValueError, match=r"expects 3 channels \(last axis\), got \(N, 4, 4, 2\)"):
        Scale(np.ones(3)).output_shape((1, 4, 4, 2))
    assert Scale(2.0).output_shape((1, 7)) == (1, 7)


# ---------------------------------------------------------------- Mul
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("gate", [0, 1])
@pytest.mark.parametrize("gate_shape", [(2, 1, 1, 5), (2, 3, 4, 5)])
def test_mul_forward_relevance_and_gradient_match_the_reference(dtype, gate, gate_shape):
    rng = np.random.default_rng(3)
    x = normal(rng, 2, 3, 4, 5, dtype=dtype)
    g = rng.random(gate_shape).astype(dtype)
    inputs = [x, g] if gate == 1 else [g, x]
    layer = Mul(gate)
    Y = layer.forward(inputs)
    close(Y, x.astype(np.float64) * g, dtype)
    R = normal(rng, *Y.shape, dtype=dtype)
    x64, g64, R64 = x.astype(np.float64), g.astype(np.float64), R.astype(np.float64)
    for rule, param, expected in (("epsilon", 0.1, naive.mul_lrp(x64, g64, R64, "constant_gate")),
                                  ("constant_gate", None, naive.mul_lrp(x64, g64, R64, "constant_gate")),
                                  ("uniform", None, naive.mul_lrp(x64, g64, R64, "uniform")),
                                  ("gradient", None, naive.mul_gradient(x64, g64, R64))):
        parts = layer.relevance(inputs, Y, R, rule, param)
        to_x, to_gate = parts[1 - gate], parts[gate]
        close(to_x, expected[0], dtype)
        close(to_gate, expected[1], dtype) if rule in ("uniform", "gradient") else \
            np.testing.assert_array_equal(to_gate, np.zeros(g.shape, dtype))


def test_mul_conserves_under_both_gate_rules():
    rng = np.random.default_rng(4)
    x, g = normal(rng, 2, 3, 3, 4), rng.random((2, 1, 1, 4))
    layer = Mul()
    Y = layer.forward([x, g])
    R = normal(rng, *Y.shape)
    for rule in ("simple", "uniform"):
        to_x, to_gate = layer.relevance([x, g], Y, R, rule)
        np.testing.assert_allclose(to_x.sum(axis=(1, 2, 3)) + to_gate.sum(axis=(1, 2, 3)), R.sum(axis=(1, 2, 3)),
                                   rtol=1e-13)
    to_x, to_gate = layer.relevance([x, g], Y, R, "uniform")
    np.testing.assert_allclose(to_gate.sum(axis=(1, 2, 3)), R.sum(axis=(1, 2, 3)) / 2, rtol=1e-13)


def test_mul_checks_its_arguments():
    for gate in (2, -1, True, 0.5, "1"):
        with pytest.raises(ValueError, match="Mul: gate must be 0 or 1"):
            Mul(gate)
    with pytest.raises(ValueError, match=r"expects a gate \(input 1\) of the feature map's shape \(N, 4, 4, 3\) "
                                         r"or \(N, 1, 1, 3\), got \(N, 4, 1, 3\)"):
        Mul().output_shape([(1, 4, 4, 3), (1, 4, 1, 3)])
    with pytest.raises(ValueError, match="expects two inputs"):
        Mul().output_shape([(1, 4, 4, 3)] * 3)
    assert Mul(0).output_shape([(2, 1, 1, 3), (2, 4, 4, 3)]) == (2, 4, 4, 3)


def se_network(seed=5, dtype=np.float64):
    """Two squeeze-and-excitation blocks (global pool, 1x1 convolutions, a
    sigmoid gate, Mul), a layer scale, a LayerNorm over the channels and a
    dense head; input (N, 4, 4, 3)."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return normal(rng, *shape, dtype=dtype) / 2

    nodes = [Node("conv", lrpnb.Convolution(w(3, 3, 3, 4), w(4), padding=1), "input"),
             Node("relu", lrpnb.Rect(), "conv")]
    for k, source in ((1, "relu"), (2, "mul1")):
        nodes += [Node(f"squeeze{k}", GlobalAveragePool(), source),
                  Node(f"excite{k}", lrpnb.Convolution(w(1, 1, 4, 4), w(4)), f"squeeze{k}"),
                  Node(f"sig{k}", lrpnb.Sigmoid(), f"excite{k}"),
                  Node(f"mul{k}", Mul(gate=0 if k == 2 else 1),
                       [source, f"sig{k}"] if k == 1 else [f"sig{k}", source])]
    nodes += [Node("scale", Scale(w(4)), "mul2"),
              Node("norm", LayerNorm(w(4) + 1, w(4), eps=1e-5), "scale"),
              Node("flat", lrpnb.Flatten(), "norm"),
              Node("dense", lrpnb.Linear(w(64, 3), w(3)), "flat")]
    return lrpnb.Network(nodes)


def test_the_gate_rule_is_chosen_per_node():
    net = se_network()
    X = np.random.default_rng(6).normal(size=(2, 4, 4, 3))
    keep = ["mul1", "sig1", "mul2", "sig2"]
    # default (presets never set): both gates held constant
    kept = net.explain(X, target=0, layers=keep).layers
    assert not kept["sig1"].any() and not kept["sig2"].any()
    # the uniform rule on one node, by name
    net.set_lrp_parameters("uniform", nodes=["mul2"])
    kept = net.explain(X, target=0, layers=keep).layers
    assert not kept["sig1"].any()
    np.testing.assert_allclose(kept["sig2"], kept["mul2"].sum(axis=(1, 2), keepdims=True) / 2, rtol=1e-12)
    assert np.abs(kept["sig2"]).max() > 0
    # a composite can pick it for every Mul
    composite = Composite("uniform gates", lambda k, layer, layers: ("uniform", None) if isinstance(layer, Mul)
                          else ("epsilon", 1e-9))
    net = se_network()
    kept = net.explain(X, target=0, composite=composite, layers=keep).layers
    for k in (1, 2):
        np.testing.assert_allclose(kept[f"sig{k}"], kept[f"mul{k}"].sum(axis=(1, 2), keepdims=True) / 2,
                                   rtol=1e-12)


def test_the_gradient_through_the_network_matches_finite_differences():
    net = se_network()
    X = np.random.default_rng(7).normal(size=(1, 4, 4, 3))
    G = net.explain(X, target=1, rule="gradient")
    step, numeric = 1e-6, np.empty_like(X)
    for index in np.ndindex(X.shape):
        up, down = X.copy(), X.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (net.scores(up)[0, 1] - net.scores(down)[0, 1]) / (2 * step)
    np.testing.assert_allclose(G, numeric, rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------- LayerNorm
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 6, 5)])
def test_layernorm_matches_the_reference(dtype, shape):
    rng = np.random.default_rng(8)
    gamma, beta = normal(rng, 5), normal(rng, 5)
    X = (normal(rng, *shape) * 3 + 1).astype(dtype)
    layer = LayerNorm(gamma, beta, eps=1e-3)
    Y = layer.forward(X)
    X64 = X.astype(np.float64)
    close(Y, naive.layernorm_forward(X64, gamma, beta, 1e-3), dtype)
    R = normal(rng, *Y.shape, dtype=dtype)
    Y64 = naive.layernorm_forward(X64, gamma, beta, 1e-3)
    for rule, param, stabilizer in (("simple", None, 1e-16), ("epsilon", 0.1, 0.1), ("zplus", None, 1e-6),
                                    ("alphabeta", 2.0, 1e-6)):
        expected = naive.layernorm_lrp(X64, gamma, beta, 1e-3, R.astype(np.float64), stabilizer)
        if dtype == np.float32:  # the float32 outputs near 0 move the shares by more than rounding
            assert np.abs(Y64).min() > 1e-3
        close(layer.relevance(X, Y, R, rule, param), expected, dtype)
    close(layer.relevance(X, Y, R, "gradient"), naive.layernorm_gradient(X64, gamma, 1e-3, R.astype(np.float64)),
          dtype)


def test_layernorm_conserves_without_beta_and_the_bias_absorbs_otherwise():
    rng = np.random.default_rng(9)
    gamma, beta = normal(rng, 6), normal(rng, 6)
    X = normal(rng, 4, 7, 6)
    R = normal(rng, 4, 7, 6)
    plain = LayerNorm(gamma)
    Y = plain.forward(X)
    np.testing.assert_allclose(plain.relevance(X, Y, R, "simple").sum(axis=-1), R.sum(axis=-1), rtol=1e-10)
    biased = LayerNorm(gamma, beta)
    Y = biased.forward(X)
    absorbed = (beta * R / Y).sum(axis=-1)
    np.testing.assert_allclose(biased.relevance(X, Y, R, "simple").sum(axis=-1), R.sum(axis=-1) - absorbed,
                               rtol=1e-10)


def test_layernorm_checks_its_arguments():
    with pytest.raises(ValueError, match="LayerNorm: gamma and beta must hold one value per feature each, got 3 "
                                         "and 2"):
        LayerNorm(np.ones(3), np.zeros(2))
    with pytest.raises(ValueError, match="LayerNorm: eps must be finite and >= 0, got -1"):
        LayerNorm(np.ones(3), eps=-1)
    with pytest.raises(ValueError, match="LayerNorm: eps must be a number"):
        LayerNorm(np.ones(3), eps="small")
    with pytest.raises(ValueError, match=r"expects 3 features \(last axis\), got \(N, 4\)"):
        LayerNorm(np.ones(3)).output_shape((1, 4))


@pytest.mark.parametrize("shape", [(2, 3, 4, 8), (2, 5, 8)])
def test_layernorm_forward_and_gradient_match_torch(shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    gamma, beta = normal(rng, 8, dtype=np.float32), normal(rng, 8, dtype=np.float32)
    X = (normal(rng, *shape) * 2 + 0.5).astype(np.float32)
    G = normal(rng, *shape, dtype=np.float32)
    layer = LayerNorm(gamma, beta, eps=1e-6)
    x = torch.tensor(X, requires_grad=True)
    y = torch.nn.functional.layer_norm(x, (8,), torch.tensor(gamma), torch.tensor(beta), eps=1e-6)
    (y * torch.tensor(G)).sum().backward()
    Y = layer.forward(X)
    np.testing.assert_allclose(Y, y.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.relevance(X, Y, G, "gradient"), x.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_layernorm_relevance_is_lxts_gradient_times_input():
    # LXT (AttnLRP's reference code) runs LayerNorm with the standard deviation
    # detached and takes gradient x input: R_in = x * d/dx sum(y * R / y)
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    gamma, beta = normal(rng, 6), normal(rng, 6)
    X, R = normal(rng, 3, 4, 6), normal(rng, 3, 4, 6)
    x = torch.tensor(X, requires_grad=True)
    mean = x.mean(dim=-1, keepdim=True)
    std = (((x - mean) ** 2).mean(dim=-1, keepdim=True) + 1e-5).sqrt()
    y = (x - mean) / std.detach() * torch.tensor(gamma) + torch.tensor(beta)
    (y * (torch.tensor(R) / y).detach()).sum().backward()
    lxt = (x * x.grad).detach().numpy()
    layer = LayerNorm(gamma, beta, eps=1e-5)
    np.testing.assert_allclose(layer.relevance(X, layer.forward(X), R, "simple"), lxt, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- the lrpnb format
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_round_trip_through_the_lrpnb_format(tmp_path, dtype):
    net = se_network(dtype=dtype)
    net.set_lrp_parameters("uniform", nodes=["mul1"])
    net.node("scale").layer.set_lrp_parameters("epsilon", 0.5)
    lrpnb.save(net, tmp_path / "se.lrpnb")
    back = lrpnb.load(tmp_path / "se.lrpnb")
    assert [n.layer.describe() for n in back.nodes] == [n.layer.describe() for n in net.nodes]
    assert back.node("mul1").layer.preset.name == "uniform" and back.node("mul1").layer.lrp_explicit
    assert back.node("mul2").layer.gate == 0 and back.node("norm").layer.eps == 1e-5
    for name, arrays in (("scale", ("scale",)), ("norm", ("gamma", "beta"))):
        for array in arrays:
            a, b = getattr(net.node(name).layer, array), getattr(back.node(name).layer, array)
            assert a.dtype == b.dtype == dtype and a.tobytes() == b.tobytes()
    X = np.random.default_rng(12).normal(size=(2, 4, 4, 3)).astype(dtype)
    assert net.scores(X).tobytes() == back.scores(X).tobytes()
    assert net.explain(X).tobytes() == back.explain(X).tobytes()
    for rule, param in (("epsilon", 0.01), ("gradient", None)):
        assert net.explain(X, rule=rule, param=param).tobytes() == back.explain(X, rule=rule, param=param).tobytes()


# ---------------------------------------------------------------- the GPU twins compile
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("module", ["gates", "norm"])
def test_the_gpu_kernels_compile_to_ptx(module, dtype):
    # the simulator runs them (tests/sim_cuda.py); this compiles them for sm_90
    pytest.importorskip("numba_cuda", reason="needs numba-cuda (pip install \".[test]\")")
    import importlib

    from numba import cuda
    from test_cuda import _signature

    kernels = importlib.import_module(f"lrpnb.cuda.{module}").SIGNATURES
    for kernel, kinds in kernels.items():
        ptx, _ = cuda.compile_ptx(kernel.py_func, _signature(kinds, dtype), cc=(9, 0))
        assert ".target sm_90" in ptx and ".entry" in ptx, kernel.py_func.__name__

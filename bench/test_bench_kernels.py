"""pytest-benchmark benchmarks of every kernel and of the whole networks.

Not part of the test run (pytest collects tests/ only). Run them with

    python -m pytest bench/ --benchmark-columns=mean,stddev,ops

These time lrpnb alone; bench/compare.py measures the ratios against the
peers side by side.
"""
import numpy as np
import pytest

import lrpnb
from lrpnb.kernels import single_threaded_blas

import compare

RULES = [("simple", None), ("epsilon", 0.01), ("alphabeta", 2.0), ("flat", None), ("ww", None)]
rng = np.random.default_rng(0)

LAYERS = {
    "conv5x5x1x10": (lrpnb.Convolution(rng.normal(size=(5, 5, 1, 10)), rng.normal(size=10)), (256, 32, 32, 1)),
    "conv5x5x10x25": (lrpnb.Convolution(rng.normal(size=(5, 5, 10, 25)), rng.normal(size=25)), (256, 14, 14, 10)),
    "conv3x3x64x64": (lrpnb.Convolution(rng.normal(size=(3, 3, 64, 64)), rng.normal(size=64)), (2, 56, 56, 64)),
    "dense784x1000": (lrpnb.Linear(rng.normal(size=(784, 1000)), rng.normal(size=1000)), (1024, 784)),
    "sumpool2x2": (lrpnb.SumPool((2, 2), (2, 2)), (256, 28, 28, 10)),
    "maxpool2x2": (lrpnb.MaxPool((2, 2), (2, 2)), (256, 28, 28, 10)),
}


@pytest.fixture(scope="module", params=sorted(LAYERS))
def case(request):
    layer, shape = LAYERS[request.param]
    X = np.abs(rng.normal(size=shape)).astype(np.float32)
    with single_threaded_blas():
        Y = layer.forward(X)
    return layer, X, Y


def test_forward(benchmark, case):
    layer, X, _ = case
    with single_threaded_blas():
        benchmark(layer.forward, X)


@pytest.mark.parametrize("rule, param", RULES)
def test_relevance(benchmark, case, rule, param):
    layer, X, Y = case
    with single_threaded_blas():
        benchmark(layer.relevance, X, Y, Y, rule, param)


@pytest.mark.parametrize("rule, param", [("epsilon", 0.01), ("alphabeta", 2.0)])
def test_lenet_batch_1024(benchmark, rule, param):
    net, _ = compare.lenet()
    X = compare.digits(1024)
    benchmark(net.explain, X, rule=rule, param=param)


def test_mlp_batch_4096(benchmark):
    X = np.random.default_rng(4).normal(size=(4096, 784)).astype(np.float32)
    benchmark(compare.mlp().explain, X, rule="epsilon", param=0.01)


@pytest.mark.parametrize("rule, param", [("epsilon", 0.01), ("alphabeta", 2.0)])
def test_vgg16_batch_2(benchmark, rule, param):
    X = np.random.default_rng(3).uniform(0, 1, (2, 224, 224, 3)).astype(np.float32)
    benchmark.pedantic(compare.vgg16().explain, args=(X,), kwargs=dict(rule=rule, param=param),
                       rounds=2, warmup_rounds=1)

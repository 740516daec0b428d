"""Training a Network: the public module.

:func:`train` (mini-batch SGD on the softmax cross-entropy, the LRP
Toolbox's ``Sequential.train``), :func:`softmax_cross_entropy` and
:func:`accuracy` live in :mod:`lrpnb.sgd` and are re-exported here;
:func:`lenet5` builds a freshly initialised LeNet-5 of the toolbox's shape.
"""
import numpy as np

from .network import Convolution, Flatten, Network, Rect, SumPool
from .sgd import accuracy, softmax_cross_entropy, train

__all__ = ["train", "softmax_cross_entropy", "accuracy", "lenet5"]


def lenet5(seed=0, dtype=np.float32):
    """A freshly initialised LeNet-5 of the toolbox's shape, for 32x32x1 inputs.

    Convolution 5x5x1x10, Rect, SumPool 2x2, Convolution 5x5x10x25, Rect,
    SumPool 2x2, Convolution 4x4x25x100, Rect, SumPool 2x2, Convolution
    1x1x100x10, Flatten. Weights are He-normal (std sqrt(2 / fan-in)), halved
    after a SumPool (whose window sum / 2 doubles the typical activation),
    so the initial scores have about unit scale; biases 0.
    """
    rng = np.random.default_rng(seed)
    layers = []
    shapes = ((5, 1, 10), (5, 10, 25), (4, 25, 100), (1, 100, 10))
    for k, (h, d, n) in enumerate(shapes):
        std = np.sqrt(2 / (h * h * d)) * (0.5 if k else 1.0)
        W = rng.normal(0, std, size=(h, h, d, n)).astype(dtype)
        layers.append(Convolution(W, np.zeros(n, dtype)))
        if k < len(shapes) - 1:
            layers += [Rect(), SumPool((2, 2), (2, 2))]
    return Network(layers + [Flatten()])

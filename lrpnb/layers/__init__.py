"""lrpnb's layers, one module per family.

- ``base``: the layer protocol (``Layer``), layers with weights
  (``Weighted``), the checks of layer arguments;
- ``dense``: Linear; ``conv``: Convolution (and the rules composed of
  several kernel calls: z^B, sign-paired weights, flat and w^2 on padding);
- ``conv_transpose``: ConvTranspose (the convolution kernels with their
  forward and backward products swapped);
- ``pool``: SumPool, MaxPool, AveragePool, GlobalAveragePool;
- ``elementwise``: Rect, Tanh, Sigmoid, Identity, BatchNorm, LRN, SoftMax,
  Flatten;
- ``elementwise`` also: the model zoo's activations Clip (ReLU6),
  HardSigmoid, HardSwish, SiLU, LeakyReLU, GELU;
- ``joins``: Add, Concat.
- ``products``: Scale, Mul; ``norm``: LayerNorm.
- ``channels``: GatherChannels (channel shuffles and slices).
- ``attention``: MatMul (of two activations), AttentionSoftmax.
- ``tokens``: Embedding, Rearrange, Reshape, Bias; ``norm`` also: RMSNorm.

Each family's ``propagate`` method is its rule block: which kernel and which
stabilizer every rule uses on it, on one screen. docs/architecture.md walks
through adding a rule or a layer.
"""
from .attention import AttentionSoftmax, MatMul
from .base import Layer, Weighted
from .channels import GatherChannels
from .conv import Convolution
from .conv_transpose import ConvTranspose
from .dense import Linear
from .elementwise import LRN, BatchNorm, Flatten, Identity, Rect, Sigmoid, SoftMax, Tanh
from .elementwise import GELU, Clip, HardSigmoid, HardSwish, LeakyReLU, SiLU
from .joins import Add, Concat
from .norm import LayerNorm
from .products import Mul, Scale
from .pool import AveragePool, GlobalAveragePool, MaxPool, SumPool
from .tokens import Bias, Embedding, Rearrange, Reshape
from .norm import RMSNorm

__all__ = ["Layer", "Weighted", "Linear", "Convolution", "SumPool", "MaxPool", "AveragePool",
           "GlobalAveragePool", "Rect", "Tanh", "Sigmoid", "SoftMax", "Flatten", "Identity", "BatchNorm", "LRN",
           "Add", "Concat"]
__all__ += ["ConvTranspose"]
__all__ += ["Scale", "Mul", "LayerNorm"]
__all__ += ["Clip", "HardSigmoid", "HardSwish", "SiLU", "LeakyReLU", "GELU"]
__all__ += ["GatherChannels"]
__all__ += ["MatMul", "AttentionSoftmax"]
__all__ += ["Embedding", "Rearrange", "Reshape", "Bias", "RMSNorm"]

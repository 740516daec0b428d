"""lrpnb: Layer-wise Relevance Propagation with compiled Numba kernels.

A fast re-creation of the LRP Toolbox (Lapuschkin et al., JMLR 17(114), 2016):
the same layers, rules, numerics and model files, computed by ``numba.njit``
kernels.
"""
from .composites import (Composite, EpsilonAlpha2Beta1, EpsilonAlpha2Beta1Flat, EpsilonGammaBox,
                         EpsilonPlus, EpsilonPlusFlat, formula_type)
from .data_io import read_data, write_data
from .model_io import load, save
from .network import (Add, AveragePool, BatchNorm, Concat, Convolution, Flatten, GlobalAveragePool,
                      Identity, Layer, Linear, LRN, MaxPool, Network, Node, Rect, Sigmoid, SoftMax, SumPool,
                      Tanh)
# submodules that import nothing heavy at module level (matplotlib, Pillow,
# h5py and scipy are imported by the functions that use them)
from . import batch, digits, evaluate, render, training  # noqa: E402,I001
from .pipeline import evaluate_dataset, explain_dataset  # noqa: E402

__version__ = "0.1.0"

__all__ = ["Network", "Node", "Layer", "Linear", "Convolution", "SumPool", "MaxPool", "AveragePool",
           "GlobalAveragePool", "Rect", "Tanh", "Sigmoid", "SoftMax", "Flatten", "Identity", "BatchNorm", "LRN",
           "Add", "Concat", "load", "save", "read_data", "write_data", "formula_type", "Composite",
           "EpsilonPlus", "EpsilonAlpha2Beta1", "EpsilonPlusFlat", "EpsilonAlpha2Beta1Flat",
           "EpsilonGammaBox", "batch", "digits", "evaluate", "render", "training", "explain_dataset",
           "evaluate_dataset", "__version__"]

"""lrpnb: Layer-wise Relevance Propagation with compiled Numba kernels.

A fast re-creation of the LRP Toolbox (Lapuschkin et al., JMLR 17(114), 2016):
the same layers, rules, numerics and model files, computed by ``numba.njit``
kernels.

The names below are imported when first used (PEP 562): ``import lrpnb``
itself loads neither numpy nor numba, so that the command line answers
``--help`` at once and a Ctrl-C while it starts is its own clean exit.
"""
import importlib
import importlib.util

__version__ = "0.1.0"

#: public name -> the module that defines it
_FROM = {
    **dict.fromkeys(("AttnLRP", "Composite", "CPLRP", "EpsilonAlpha2Beta1", "EpsilonAlpha2Beta1Flat",
                     "EpsilonGammaBox", "EpsilonPlus", "EpsilonPlusFlat", "formula_type"), ".composites"),
    **dict.fromkeys(("read_data", "write_data"), ".data_io"),
    **dict.fromkeys(("load", "save"), ".model_io"),
    **dict.fromkeys(("Add", "AveragePool", "BatchNorm", "Concat", "Convolution", "Flatten", "GlobalAveragePool",
                     "Identity", "Layer", "Linear", "LRN", "MaxPool", "Network", "Node", "Rect", "Sigmoid",
                     "SoftMax", "SumPool", "Tanh"), ".network"),
    **dict.fromkeys(("evaluate_dataset", "explain_dataset"), ".pipeline"),
    **dict.fromkeys(("ConvTranspose", "Clip", "HardSigmoid", "HardSwish", "SiLU", "LeakyReLU", "GELU", "Scale",
                     "Mul", "LayerNorm", "GatherChannels", "MatMul", "AttentionSoftmax", "Embedding", "Rearrange",
                     "Reshape", "Bias", "RMSNorm"), ".layers"),
}
#: submodules that are attributes of the package, as after ``import lrpnb.NAME``
_SUBMODULES = ("batch", "digits", "evaluate", "render", "training")

__all__ = ["Network", "Node", "Layer", "Linear", "Convolution", "SumPool", "MaxPool", "AveragePool",
           "GlobalAveragePool", "Rect", "Tanh", "Sigmoid", "SoftMax", "Flatten", "Identity", "BatchNorm", "LRN",
           "Add", "Concat", "ConvTranspose", "Clip", "HardSigmoid", "HardSwish", "SiLU", "LeakyReLU", "GELU",
           "Scale", "Mul", "LayerNorm", "GatherChannels", "MatMul", "AttentionSoftmax", "Embedding", "Rearrange",
           "Reshape", "Bias", "RMSNorm", "load", "save", "read_data", "write_data", "formula_type", "Composite",
           "EpsilonPlus", "EpsilonAlpha2Beta1", "EpsilonPlusFlat", "EpsilonAlpha2Beta1Flat",
           "EpsilonGammaBox", "AttnLRP", "CPLRP", "batch", "digits", "evaluate", "render", "training",
           "explain_dataset", "evaluate_dataset", "__version__"]


def __getattr__(name):
    if name in _FROM:
        value = getattr(importlib.import_module(_FROM[name], __name__), name)
    elif name in _SUBMODULES or (not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}")):
        # any submodule, as after ``import lrpnb.NAME`` (lrpnb.composites, lrpnb.rules, ...)
        value = importlib.import_module("." + name, __name__)
    else:
        raise AttributeError(f"module 'lrpnb' has no attribute {name!r}")
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))

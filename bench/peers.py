"""The peers lrpnb is compared with: zennit (PyTorch) and the toolbox's numpy
algorithm, both built here from lrpnb networks so that all run the same model
on the same inputs."""
import sys
import types

import numpy as np

import lrpnb


def import_zennit():
    """Import zennit, or return None when torch or zennit is missing.

    zennit imports torchvision at start-up only to name two ResNet blocks; a
    PyPI torchvision that does not match the installed torch fails to import.
    Then two placeholder classes stand in (our networks contain no ResNet).
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    try:
        import torchvision.models.resnet  # noqa: F401
    except Exception:
        for name in ("torchvision", "torchvision.models", "torchvision.models.resnet"):
            sys.modules.pop(name, None)
        resnet = types.ModuleType("torchvision.models.resnet")
        resnet.Bottleneck = type("Bottleneck", (), {})
        resnet.BasicBlock = type("BasicBlock", (), {})
        models = types.ModuleType("torchvision.models")
        models.resnet = resnet
        package = types.ModuleType("torchvision")
        package.models = models
        sys.modules.update({"torchvision": package, "torchvision.models": models,
                            "torchvision.models.resnet": resnet})
    try:
        import zennit
    except ImportError:
        return None
    return zennit


def to_torch(net, input_shape):
    """A torch.nn.Sequential computing the same function as ``net`` (NCHW).

    The toolbox's SumPool (window sum / sqrt(k)) becomes AvgPool (sum / k),
    and the factor sqrt(k) moves into the next layer's weights. A Linear
    after a Flatten gets its rows permuted from NHWC to NCHW order.
    """
    import torch

    shapes = [tuple(input_shape)] + net.output_shapes(input_shape)
    modules, scale = [], 1.0
    for k, layer in enumerate(net.layers):
        if isinstance(layer, lrpnb.Convolution):
            conv = torch.nn.Conv2d(layer.W.shape[2], layer.W.shape[3], layer.W.shape[:2], stride=layer.stride)
            conv.weight.data = torch.tensor(layer.W.transpose(3, 2, 0, 1) * scale, dtype=torch.float32)
            conv.bias.data = torch.tensor(layer.B, dtype=torch.float32)
            modules.append(conv)
            scale = 1.0
        elif isinstance(layer, lrpnb.Linear):
            W = layer.W * scale
            if k > 0 and isinstance(net.layers[k - 1], lrpnb.Flatten) and len(shapes[k - 1]) == 4:
                _, h, w, d = shapes[k - 1]
                W = W.reshape(h, w, d, -1).transpose(2, 0, 1, 3).reshape(h * w * d, -1)
            dense = torch.nn.Linear(layer.m, layer.n)
            dense.weight.data = torch.tensor(W.T.copy(), dtype=torch.float32)
            dense.bias.data = torch.tensor(layer.B, dtype=torch.float32)
            modules.append(dense)
            scale = 1.0
        elif isinstance(layer, lrpnb.Rect):
            modules.append(torch.nn.ReLU())
        elif isinstance(layer, lrpnb.SumPool):
            modules.append(torch.nn.AvgPool2d(layer.pool, layer.stride))
            scale = float(np.sqrt(layer.pool[0] * layer.pool[1]))
        elif isinstance(layer, lrpnb.MaxPool):
            modules.append(torch.nn.MaxPool2d(layer.pool, layer.stride))
        elif isinstance(layer, lrpnb.Flatten):
            modules.append(torch.nn.Flatten())
        else:
            raise ValueError(f"no torch equivalent for {layer.describe()}")
    return torch.nn.Sequential(*modules).eval()


def zennit_explainer(net, input_shape, rule, param):
    """A function X (NHWC numpy) -> relevance (NHWC numpy) of the predicted
    class with zennit's Epsilon or AlphaBeta rule on every convolution, dense
    and average pooling layer (max pooling: winner takes all, as in lrpnb)."""
    import torch

    import_zennit()
    from zennit.composites import LayerMapComposite
    from zennit.rules import AlphaBeta, Epsilon
    from zennit.types import AvgPool, Convolution, Linear

    model = to_torch(net, input_shape)
    if rule == "epsilon":
        make = lambda: Epsilon(epsilon=param)  # noqa: E731
    else:
        make = lambda: AlphaBeta(alpha=param, beta=param - 1)  # noqa: E731
    # the toolbox's SumPool shares relevance in proportion to its inputs: the
    # same rule on AvgPool does that (its stabilizer sees the sum / k)
    composite = LayerMapComposite([(Convolution, make()), (Linear, make()), (AvgPool, make())])

    images = len(input_shape) == 4

    def explain(X):
        x = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2) if images else X)).requires_grad_(True)
        with composite.context(model) as modified:
            out = modified(x)
            start = torch.zeros_like(out)
            rows = torch.arange(len(out))
            target = out.argmax(1)
            start[rows, target] = out[rows, target]
            relevance, = torch.autograd.grad(out, x, start)
        return relevance.numpy().transpose(0, 2, 3, 1) if images else relevance.numpy()

    return explain

"""Imported models against zennit: VGG-16, VGG-16-BN and ResNet-50.

The three networks are built here in plain PyTorch with torchvision's
architecture and seeded random weights (no downloads; torchvision itself
does not import beside the local CPU torch), with random BatchNorm
statistics, exported to ONNX (``torch.onnx.export(..., dynamo=False)``) and
loaded with ``lrpnb.load``. Both sides then explain the same inputs with the
same composite:

- lrpnb: ``lrpnb.EpsilonPlusFlat()`` / ``EpsilonGammaBox`` on the imported graph
  (BatchNorm folded at import);
- zennit: the same composite, from the score of the predicted class, with
  the BatchNorms folded into the convolutions beforehand (exactly; with
  ``--zennit-canonizer`` by zennit's SequentialMergeBatchNorm instead, whose
  merge leaves a factor 1/sqrt(1 + eps) per BatchNorm) and the residual
  additions as zennit's ``Sum`` layer (as its ResNet canonizer makes them).

It prints the agreement (max relative difference, correlation) and images/s
side by side, one process, one run. Usage (from the repository root):

    python bench/onnx_models.py [--batch 8] [--size 224] [--models vgg16,vgg16_bn,resnet50]
        [--device cpu|cuda] [--repeats 3]
"""
import argparse
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import lrpnb  # noqa: E402
from compare import best_time  # noqa: E402
from peers import import_zennit  # noqa: E402


def torch_models():
    import torch
    from torch import nn

    zennit = import_zennit()

    def vgg(batch_norm):
        layers, channels = [], 3
        for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.Conv2d(channels, v, 3, padding=1))
                layers += [nn.BatchNorm2d(v), nn.ReLU()] if batch_norm else [nn.ReLU()]
                channels = v
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(),
                             nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(),
                             nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 1000))

    class Bottleneck(nn.Module):
        """torchvision's ResNet bottleneck; the residual join is zennit's Sum
        when ``zennit_sum`` is set (for zennit's Norm rule), a plain + for
        the ONNX export."""

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU()
            self.relu_out = nn.ReLU()
            self.downsample = downsample
            self.sum = zennit.layer.Sum() if zennit else None
            self.zennit_sum = False

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            out = self.sum(torch.stack([out, identity], dim=-1)) if self.zennit_sum else out + identity
            return self.relu_out(out)

    def resnet50():
        layers, inplanes = [], 64
        for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for k in range(blocks):
                down = None
                if k == 0 and (stride != 1 or inplanes != planes * 4):
                    down = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                         nn.BatchNorm2d(planes * 4))
                layers.append(Bottleneck(inplanes, planes, stride if k == 0 else 1, down))
                inplanes = planes * 4
        return nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                             nn.MaxPool2d(3, 2, 1), *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(2048, 1000))

    return {"vgg16": lambda: vgg(False), "vgg16_bn": lambda: vgg(True), "resnet50": resnet50}


def seeded(model, seed):
    """torchvision's initialisation (He for convolutions), seeded; BatchNorm
    with random statistics and affine parameters, so that folding matters."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.normal_(module.bias, 0, 0.01)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.normal_(module.bias, 0, 0.1)
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)
    return model.eval()


def fold_batchnorm(model):
    """Fold every BatchNorm into the convolution before it (in module order),
    exactly, and replace it by an Identity: what zennit's
    SequentialMergeBatchNorm does, except that zennit's leaves the BatchNorm
    computing x / sqrt(1 + eps) instead of x (its variance set to 1, its eps
    kept), which scales each block by 1 - 5e-6: 2.6e-4 over ResNet-50's 53."""
    import torch
    from torch import nn

    previous = None
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d):
                previous = child
            elif isinstance(child, nn.BatchNorm2d):
                with torch.no_grad():
                    scale = child.weight / torch.sqrt(child.running_var + child.eps)
                    previous.weight.mul_(scale[:, None, None, None])
                    bias = previous.bias if previous.bias is not None else torch.zeros_like(scale)
                    previous.bias = nn.Parameter((bias - child.running_mean) * scale + child.bias)
                setattr(parent, name, nn.Identity())
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--models", default="vgg16,vgg16_bn,resnet50")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--composite", default="EpsilonPlusFlat", choices=("EpsilonPlusFlat", "EpsilonGammaBox"))
    parser.add_argument("--zennit-canonizer", action="store_true",
                        help="let zennit merge the BatchNorms (SequentialMergeBatchNorm) instead of folding "
                             "them exactly beforehand; its merge leaves a factor 1/sqrt(1 + eps) per BatchNorm")
    parser.add_argument("--float64", action="store_true",
                        help="both sides in float64: shows where the formulas coincide (differences "
                             "of rounding only)")
    args = parser.parse_args()

    zennit = import_zennit()
    if zennit is None:
        sys.exit("needs torch and zennit: pip install \".[peers,onnx]\"")
    import torch
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device(args.device)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__} threads "
          f"{torch.get_num_threads()}; lrpnb threads {lrpnb.kernels.workers()}; device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.batch, 3, args.size, args.size)).astype(np.float32)
    low, high = float(X.min()), float(X.max())
    makers = torch_models()
    rows = []
    for name in args.models.split(","):
        model = seeded(makers[name](), 1)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, name + ".onnx")
            torch.onnx.export(model, torch.from_numpy(X[:1]), path, dynamo=False, input_names=["x"],
                              training=torch.onnx.TrainingMode.PRESERVE,  # BatchNorm nodes kept for lrpnb to fold
                              output_names=["scores"], dynamic_axes={"x": {0: "N"}, "scores": {0: "N"}})
            net = lrpnb.load(path, device=args.device)
        for module in model.modules():
            if hasattr(module, "zennit_sum"):
                module.zennit_sum = True
        # zennit's canonizer, or BatchNorm folded exactly beforehand (see fold_batchnorm)
        canonizers = [SequentialMergeBatchNorm()] if args.zennit_canonizer else []
        if not args.zennit_canonizer:
            model = fold_batchnorm(model)
        model = model.to(device)
        if args.composite == "EpsilonPlusFlat":
            ours, theirs = lrpnb.EpsilonPlusFlat(), EpsilonPlusFlat(canonizers=canonizers)
        else:
            ours = lrpnb.EpsilonGammaBox(low=low, high=high)
            theirs = EpsilonGammaBox(low=low, high=high, canonizers=canonizers)
        if args.float64:
            model = model.double()
        Xt = torch.from_numpy(X.astype(np.float64) if args.float64 else X).to(device)

        def zennit_explain():
            with theirs.context(model) as modified:
                x = Xt.clone().requires_grad_(True)
                out = modified(x)
                start = torch.zeros_like(out)
                rows_ = torch.arange(len(out))
                best = out.argmax(dim=1)
                start[rows_, best] = out[rows_, best]
                relevance, = torch.autograd.grad(out, x, grad_outputs=start)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return relevance.detach().cpu().numpy().transpose(0, 2, 3, 1)

        Xn = np.ascontiguousarray(X.transpose(0, 2, 3, 1), dtype=np.float64 if args.float64 else np.float32)

        def lrpnb_explain():
            return np.asarray(net.explain(Xn, composite=ours))

        with torch.no_grad():
            scores = model(Xt).cpu().numpy()
        ours_scores = np.asarray(net.scores(Xn))
        theirs_map, ours_map = zennit_explain(), lrpnb_explain()
        agree = np.abs(ours_map - theirs_map).max() / np.abs(theirs_map).max()
        corr = np.corrcoef(ours_map.ravel(), theirs_map.ravel())[0, 1]
        if not args.float64:
            # each side's float32 rounding, against lrpnb in float64 (where the
            # formulas coincide, the two agree to 4e-8 in float64)
            exact = np.asarray(net.explain(Xn.astype(np.float64), composite=ours))
            scale = np.abs(exact).max()
            print(f"{name:<10} float32 against float64: lrpnb {np.abs(ours_map - exact).max() / scale:.2e}, "
                  f"zennit {np.abs(theirs_map - exact).max() / scale:.2e}", flush=True)
        t_ours = best_time(lrpnb_explain, args.repeats)
        t_theirs = best_time(zennit_explain, args.repeats)
        rows.append((name, np.abs(ours_scores - scores).max() / np.abs(scores).max(), agree, corr,
                     args.batch / t_ours, args.batch / t_theirs))
        print(f"{name:<10} scores rel {rows[-1][1]:.1e}  relevance max rel diff {agree:.2e}  corr {corr:.6f}  "
              f"lrpnb {rows[-1][4]:7.2f} img/s  zennit {rows[-1][5]:7.2f} img/s  ratio {t_theirs / t_ours:.2f}x",
              flush=True)


if __name__ == "__main__":
    main()

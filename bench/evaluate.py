"""Region perturbation side by side: lrpnb.evaluate against Quantus 0.6.

The same model (LeNet-5, as a PyTorch twin for Quantus), the same digits,
the same relevance (lrpnb's epsilon 0.01 maps) and the same settings: 2 x 2
regions, 100 steps, most relevant first, every replaced pixel set to one
value (Quantus's "uniform" draws one value per region and step, the paper
and lrpnb one per pixel, so a constant is the setting both compute alike).
Quantus's RegionPerturbation is the twin of these regions; its PixelFlipping
(``--pixel-flipping``) is the same with 1 x 1 regions through every pixel.
Prints the time of each, the ratio, and how far the curves agree. Usage
(from the repository root, with the peers extra and quantus==0.6.0):

    python bench/evaluate.py [--count 1000] [--steps 100] [--pixel-flipping] [--device cuda]

``--device cuda`` runs both on the GPU: lrpnb's network on the device (the
perturbed copies made there), Quantus's PyTorch model on CUDA (TF32 off).

The toolbox's LeNet-5 and MNIST digits are used when ../shared holds them,
the embedded LeNet-5 and synthetic digits otherwise.
"""
import argparse
import os
import pathlib
import platform
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import lrpnb  # noqa: E402
from lrpnb import evaluate  # noqa: E402
from peers import import_zennit, to_torch  # noqa: E402

SHARED = HERE.parent.parent / "shared" / "formats"


def model_and_digits(count):
    from lrpnb.pipeline.options import embedded_model
    from lrpnb.digits import mnist_images, synthetic_digits

    if (SHARED / "models" / "LeNet-5.txt").exists():
        net = lrpnb.load(SHARED / "models" / "LeNet-5.txt")
        pixels = lrpnb.read_data(SHARED / "data" / "test_images.mat")[:count]
        return net, mnist_images(pixels), "the toolbox's LeNet-5 on MNIST test digits"
    digits = synthetic_digits(count, seed=7)
    return lrpnb.load(embedded_model()), digits.images, "the embedded LeNet-5 on synthetic digits"


def quantus_metric(kind, region, steps, value):
    import_zennit()  # torchvision placeholders, as for zennit: Quantus imports zennit
    import quantus

    common = dict(abs=False, normalise=False, disable_warnings=True, display_progressbar=False,
                  return_aggregate=False, perturb_baseline=value)
    if kind == "pixel":
        return quantus.PixelFlipping(features_in_step=1, **common)
    return quantus.RegionPerturbation(patch_size=region, regions_evaluation=steps, order="morf", **common)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--region", type=int, default=2)
    parser.add_argument("--value", type=float, default=0.0, help="the replacement value")
    parser.add_argument("--quantus-batch", type=int, default=1000, help="Quantus's batch_size")
    parser.add_argument("--pixel-flipping", action="store_true",
                        help="also Quantus's PixelFlipping (1 x 1 regions, every pixel) on 100 digits")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where both run (default cpu)")
    args = parser.parse_args()
    import torch

    net, X, origin = model_and_digits(args.count)
    X = X.astype(np.float32)
    R = net.explain(X, rule="epsilon", param=0.01)
    target = np.argmax(net.scores(X), axis=1)
    model = to_torch(net, X.shape)
    where = f"{os.cpu_count()} cores, torch {torch.__version__} threads {torch.get_num_threads()}"
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        model = model.to("cuda")
        net.to("cuda")
        where = f"{torch.cuda.get_device_name()}, torch {torch.__version__} (TF32 off)"
    print(f"{origin}: {len(X)} digits, {args.region} x {args.region} regions, {args.steps} steps, "
          f"replaced by {args.value:g}; {platform.processor() or platform.machine()}, {where}")

    runs = [("region", args.region, args.steps, len(X))]
    if args.pixel_flipping:
        runs.append(("pixel", 1, X.shape[1] * X.shape[2], min(100, len(X))))
    for kind, region, steps, count in runs:
        x, r, t = X[:count], R[:count], target[:count]

        def ours():
            return evaluate.perturbation_curve(net, x, r, t, region=region, steps=steps, replace=args.value)

        ours()  # compiled, cached
        began = time.perf_counter()
        curve = ours()
        lrpnb_seconds = time.perf_counter() - began

        metric = quantus_metric(kind, region, steps, args.value)
        began = time.perf_counter()
        drops = metric(model=model, x_batch=x.transpose(0, 3, 1, 2).copy(), y_batch=t,
                       a_batch=r.transpose(0, 3, 1, 2).copy(), device=args.device, batch_size=args.quantus_batch,
                       softmax=False)
        quantus_seconds = time.perf_counter() - began
        drops = np.asarray(drops, dtype=np.float64)
        if kind == "pixel":  # Quantus returns the scores after each step
            ours_drops = curve[:, 1:]
        else:  # Quantus returns f(x) - f(x^(k)) for k = 1..steps
            ours_drops = curve[:, :1] - curve[:, 1:]
        scale = np.abs(curve).max()
        differ = np.abs(ours_drops - drops).max(axis=1) / scale
        name = "RegionPerturbation" if kind == "region" else "PixelFlipping"
        print(f"\n{name} ({region} x {region}, {steps} steps, {count} digits)")
        print(f"  lrpnb.evaluate  {lrpnb_seconds:8.2f} s  ({count * (steps + 1) / lrpnb_seconds:,.0f} "
              f"forward passes/s)")
        print(f"  Quantus 0.6     {quantus_seconds:8.2f} s")
        print(f"  lrpnb / Quantus {quantus_seconds / lrpnb_seconds:8.1f}x faster")
        print(f"  agreement: {np.mean(differ <= 1e-5):.1%} of the curves within 1e-5 of the largest "
              f"score (max difference {differ.max():.2e}); AOPC lrpnb {evaluate.aopc(curve):.4f}")


if __name__ == "__main__":
    main()

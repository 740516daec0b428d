"""Whole-pipeline figures: explaining a data set through the lrpnb command,
and training, side by side in one run.

    python bench/pipeline.py [--count 10000]

1. Explaining N LeNet-5 inputs (the toolbox's LeNet-5 and MNIST digits from
   ../shared when present, else the embedded model and synthetic digits),
   epsilon 0.01, batch 1024: ``net.explain`` in memory, then the ``lrpnb
   explain`` command (run in this process, kernels warm) writing .npy and
   .h5, so the cost of the files shows as a ratio (best of --repeats rounds).
2. Training the toolbox's LeNet-5 shape on synthetic digits, batch 64:
   lrpnb's ``net.train`` against the same network, loss, batch and SGD with
   momentum in PyTorch (CPU), when torch is importable.
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
SHARED = HERE.parent.parent / "shared" / "formats"

import lrpnb  # noqa: E402
from lrpnb.cli import main as cli_main  # noqa: E402
from lrpnb.pipeline.options import embedded_model  # noqa: E402
from lrpnb.digits import mnist_images, synthetic_digits  # noqa: E402
from lrpnb.training import lenet5  # noqa: E402


def inputs(count):
    model, images = SHARED / "models" / "LeNet-5.nn", SHARED / "data" / "test_images.mat"
    if model.exists() and images.exists():
        digits = lrpnb.read_data(images)[:count]
        X = mnist_images(digits)
        return str(model), X, "toolbox LeNet-5, MNIST test digits"
    return embedded_model(), synthetic_digits(count, seed=7).images, "embedded LeNet-5, synthetic digits"


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def explaining(count, repeats=3):
    model, X, what = inputs(count)
    net = lrpnb.load(model)
    net.explain(X[:1024], rule="epsilon", param=0.01)  # warm-up
    folder = tempfile.mkdtemp()
    data = os.path.join(folder, "x.npy")
    np.save(data, X)

    def in_memory():
        for start in range(0, len(X), 1024):
            net.explain(X[start:start + 1024], rule="epsilon", param=0.01)

    def command(out):
        path = os.path.join(folder, out)
        return lambda: cli_main(["explain", "--model", model, "--data", data, "--out", path, "--rule",
                                 "epsilon", "--param", "0.01", "--batch-size", "1024", "--overwrite"])

    # rounds of all three, best of each: the machines are shared and noisy
    rounds = [(timed(in_memory), timed(command("r.npy")), timed(command("r.h5"))) for _ in range(repeats)]
    memory, npy, h5 = (min(times) for times in zip(*rounds))
    print(f"\nexplaining {len(X)} inputs ({what}), epsilon 0.01, batch 1024, float32, best of {repeats} "
          f"rounds:")
    for name, seconds in (("net.explain, in memory", memory), ("lrpnb explain -> .npy", npy),
                          ("lrpnb explain -> .h5", h5)):
        print(f"  {name:<24} {len(X) / seconds:>8,.0f} samples/s  ({seconds / memory:.2f}x the in-memory time)")


def training(iters):
    digits = synthetic_digits(4096, seed=8)
    net = lenet5(seed=0)
    net.train(digits.images, digits.labels, batchsize=64, iters=5, status=0, verbose=False)  # warm-up
    start = time.perf_counter()
    net.train(digits.images, digits.labels, batchsize=64, iters=iters, status=0, verbose=False, seed=1)
    lrpnb_rate = iters * 64 / (time.perf_counter() - start)
    print("\ntraining LeNet-5 on synthetic digits, batch 64, SGD with momentum, float32:")
    print(f"  lrpnb net.train   {lrpnb_rate:>8,.0f} samples/s (the held-out evaluation at the end included)")
    try:
        import torch
    except ImportError:
        print("  torch not importable: no side-by-side figure")
        return
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 10, 5), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(10, 25, 5), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(25, 100, 4), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(100, 10, 1), torch.nn.Flatten())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    X = torch.from_numpy(np.ascontiguousarray(digits.images.transpose(0, 3, 1, 2)))
    Y = torch.from_numpy(digits.labels)
    rng = np.random.default_rng(1)

    def step():
        chosen = torch.from_numpy(rng.choice(len(X), size=64, replace=False))
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X[chosen]), Y[chosen])
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    torch_rate = iters * 64 / (time.perf_counter() - start)
    print(f"  PyTorch {torch.__version__:<9} {torch_rate:>8,.0f} samples/s "
          f"({torch.get_num_threads()} threads) -> lrpnb {lrpnb_rate / torch_rate:.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the explaining figures (best kept)")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, numpy {np.__version__}")
    explaining(args.count, args.repeats)
    training(args.iters)
    return 0


if __name__ == "__main__":
    sys.exit(main())

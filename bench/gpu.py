"""The GPU targets of bench/README.md, side by side with zennit, in one run.

Every line of the GPU issue, on one machine with a CUDA GPU: lrpnb on the GPU
against zennit on PyTorch CUDA (TF32 off for both: cuDNN's and cuBLAS's
float32 then compute in IEEE float32, as lrpnb does) and lrpnb on the CPU of
the same machine, on the same inputs, plus the agreement of the results, the
warnings a normal explain prints, and a per-kernel profile (CUPTI, through
torch.profiler) of one LeNet-5 and one VGG-16 explain.

    python bench/gpu.py [--lenet-batch 8192] [--vgg-batch 16] [--targets-batch 1024]
                        [--skip-vgg] [--skip-cpu] [--skip-profile]

Under NUMBA_ENABLE_CUDASIM=1 (no GPU), small batches check that the script
runs; its figures then mean nothing.
"""
import argparse
import pathlib
import sys
import time
import warnings

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import lrpnb  # noqa: E402
from compare import digits, lenet, vgg16  # noqa: E402
from peers import import_zennit, to_torch  # noqa: E402

SHARED = HERE.parent.parent / "shared"


def best_time(function, repeats, synchronize):
    function()  # warm-up: compilation, caches, memory pools
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def relative(a, b):
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())


def zennit_cuda(net, X, rule, param):
    """A function explaining the torch CUDA tensor of X (NCHW) with zennit,
    or None without torch, zennit or a CUDA device."""
    if import_zennit() is None:
        return None, None
    import torch

    if not torch.cuda.is_available():
        return None, None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    from zennit.composites import LayerMapComposite
    from zennit.rules import AlphaBeta, Epsilon
    from zennit.types import AvgPool, Convolution, Linear

    model = to_torch(net, X.shape).to("cuda")
    make = (lambda: Epsilon(epsilon=param)) if rule == "epsilon" else (lambda: AlphaBeta(alpha=param, beta=param - 1))
    composite = LayerMapComposite([(Convolution, make()), (Linear, make()), (AvgPool, make())])
    x_torch = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2))).to("cuda")

    def explain():
        x = x_torch.clone().requires_grad_(True)
        with composite.context(model) as modified:
            out = modified(x)
            start = torch.zeros_like(out)
            rows = torch.arange(len(out), device=out.device)
            target = out.argmax(1)
            start[rows, target] = out[rows, target]
            relevance, = torch.autograd.grad(out, x, start)
        return relevance

    return explain, torch.cuda.synchronize


def profile(label, function):
    """The kernels of one call by GPU time (torch.profiler's CUPTI records
    every kernel of the process, numba's and cuBLAS's too)."""
    try:
        import torch
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile
    except ImportError:
        print(f"  profile of {label}: torch is not installed")
        return
    if not torch.cuda.is_available():
        print(f"  profile of {label}: torch sees no CUDA device")
        return
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        function()
        torch.cuda.synchronize()
    print(f"\n  kernels of one {label} explain, by GPU time:")
    print("    " + prof.key_averages().table(sort_by="cuda_time_total", row_limit=12).replace("\n", "\n    "))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lenet-batch", type=int, default=8192)
    parser.add_argument("--vgg-batch", type=int, default=16)
    parser.add_argument("--targets-batch", type=int, default=1024)
    parser.add_argument("--skip-vgg", action="store_true")
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--skip-profile", action="store_true")
    args = parser.parse_args()
    from numba import cuda

    from lrpnb.cuda.products import backend_name

    name = getattr(cuda.get_current_device(), "name", "the CUDA simulator")
    print(f"GPU: {name.decode() if isinstance(name, bytes) else name}; products: {backend_name()}")
    sync = cuda.synchronize

    # LeNet-5, one target
    cpu_net, what = lenet()
    X = digits(args.lenet_batch)
    gpu_net = lrpnb.Network(cpu_net.layers, device="cuda")
    X_gpu = cuda.to_device(X)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        R_gpu = gpu_net.explain(X_gpu, rule="epsilon", param=0.01).copy_to_host()
    print(f"\nLeNet-5 ({what}), batch {args.lenet_batch}, float32, epsilon 0.01, predicted class")
    print(f"  warnings printed by the first explain: {len(caught)}"
          + "".join(f"\n    {w.category.__name__}: {w.message}" for w in caught[:5]))
    seconds = best_time(lambda: gpu_net.explain(X_gpu, rule="epsilon", param=0.01), 5, sync)
    print(f"  lrpnb GPU   {args.lenet_batch / seconds:12,.0f} images/s")
    explain, torch_sync = zennit_cuda(cpu_net, X, "epsilon", 0.01)
    if explain is not None:
        z_seconds = best_time(explain, 5, torch_sync)
        print(f"  zennit CUDA {args.lenet_batch / z_seconds:12,.0f} images/s -> lrpnb is {z_seconds / seconds:.2f}x "
              f"(target >= 3x)")
    else:
        print("  zennit CUDA: torch, zennit or torch's CUDA is missing")
    if not args.skip_cpu:
        cpu_seconds = best_time(lambda: cpu_net.explain(X, rule="epsilon", param=0.01), 2, lambda: None)
        R_cpu = cpu_net.explain(X, rule="epsilon", param=0.01)
        print(f"  lrpnb CPU   {args.lenet_batch / cpu_seconds:12,.0f} images/s -> GPU is "
              f"{cpu_seconds / seconds:.1f}x (target >= 30x)")
        print(f"  GPU against CPU: max relative difference {relative(R_gpu, R_cpu):.1e} (target <= 1e-4)")
    seconds_ab = best_time(lambda: gpu_net.explain(X_gpu, rule="alphabeta", param=2.0), 3, sync)
    print(f"  alpha-beta (2) / epsilon time: {seconds_ab / seconds:.2f}")

    # many targets
    Xt = cuda.to_device(X[:args.targets_batch])
    one = best_time(lambda: gpu_net.explain(Xt, rule="epsilon", param=0.01), 5, sync)
    every = best_time(lambda: gpu_net.explain(Xt, target="all", rule="epsilon", param=0.01), 5, sync)
    print(f"\nLeNet-5, target='all' (10 classes), batch {args.targets_batch}: {every * 1e3:.2f} ms against "
          f"{one * 1e3:.2f} ms for one target -> {every / one:.2f}x (target <= 3x)")

    # toolbox parity in float64
    reference = SHARED / "reference" / "lenet5.npz"
    if reference.exists():
        data = np.load(reference)
        worst = 0.0
        for key in data.files:
            if not key.startswith("lenet/R/"):
                continue
            rule, param = key.split("/")[2:4]
            param = None if param == "None" else float(param)
            R = gpu_net.explain(data["lenet/X"], target=data["lenet/target"].astype(int).ravel(), rule=rule,
                                param=param)
            worst = max(worst, relative(R, data[key]))
        print(f"\nToolbox parity, float64 on the GPU: max relative difference {worst:.1e} (target <= 1e-8)")
    else:
        print(f"\nToolbox parity: {reference} is missing")
    if not args.skip_profile:
        profile(f"LeNet-5 batch {args.lenet_batch}", lambda: gpu_net.explain(X_gpu, rule="epsilon", param=0.01))

    if args.skip_vgg:
        return
    net = vgg16()
    Xv = np.random.default_rng(3).uniform(0, 1, (args.vgg_batch, 224, 224, 3)).astype(np.float32)
    gpu_vgg = lrpnb.Network(net.layers, device="cuda")
    Xv_gpu = cuda.to_device(Xv)
    print(f"\nVGG-16 geometry without padding, batch {args.vgg_batch}, float32, predicted class")
    times = {}
    for rule, param in (("epsilon", 0.01), ("alphabeta", 2.0)):
        times[rule] = best_time(lambda: gpu_vgg.explain(Xv_gpu, rule=rule, param=param), 3, sync)
        line = f"  lrpnb GPU   {rule:9s} {args.vgg_batch / times[rule]:9.1f} images/s"
        explain, torch_sync = zennit_cuda(net, Xv, rule, param)
        if explain is not None:
            z_seconds = best_time(explain, 3, torch_sync)
            line += (f"; zennit CUDA (TF32 off) {args.vgg_batch / z_seconds:9.1f} images/s -> lrpnb is "
                     f"{z_seconds / times[rule]:.2f}x" + (" (target >= 1.5x)" if rule == "epsilon" else ""))
            R = gpu_vgg.explain(Xv_gpu, rule=rule, param=param).copy_to_host()
            Z = explain().detach().cpu().numpy().transpose(0, 2, 3, 1)
            line += f"; correlation {np.corrcoef(R.ravel(), Z.ravel())[0, 1]:.4f}"
        print(line)
    print(f"  alpha-beta / epsilon time: {times['alphabeta'] / times['epsilon']:.2f} (target <= 2)")
    if not args.skip_profile:
        profile(f"VGG-16 batch {args.vgg_batch}", lambda: gpu_vgg.explain(Xv_gpu, rule="epsilon", param=0.01))


if __name__ == "__main__":
    main()

"""The GPU target of bench/README.md, for a machine with a CUDA GPU.

LeNet-5, forward + epsilon LRP (0.01) of the predicted class, float32, batch
8192: lrpnb on the GPU against lrpnb on the CPU of the same machine and
zennit on PyTorch CUDA, on the same inputs; checks that the GPU and CPU
relevance agree to 1e-4 (relative to the largest value).

    python bench/gpu.py [--batch 8192]
"""
import argparse
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import lrpnb  # noqa: E402
from compare import best_time, digits, lenet  # noqa: E402
from peers import import_zennit, to_torch  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8192)
    args = parser.parse_args()
    from numba import cuda

    name = cuda.get_current_device().name
    print(f"GPU: {name.decode() if isinstance(name, bytes) else name}")
    cpu_net, what = lenet()
    X = digits(args.batch)
    gpu_net = lrpnb.Network(cpu_net.layers, device="cuda")
    X_gpu = cuda.to_device(X)

    def on_gpu():
        R = gpu_net.explain(X_gpu, rule="epsilon", param=0.01)
        cuda.synchronize()
        return R

    gpu_seconds = best_time(on_gpu, 5)
    cpu_seconds = best_time(lambda: cpu_net.explain(X, rule="epsilon", param=0.01), 2)
    R_gpu = on_gpu().copy_to_host()
    R_cpu = cpu_net.explain(X, rule="epsilon", param=0.01)
    agreement = np.abs(R_gpu.astype(np.float64) - R_cpu).max() / np.abs(R_cpu).max()
    print(f"LeNet-5 ({what}), batch {args.batch}, float32, epsilon 0.01")
    print(f"  lrpnb GPU {args.batch / gpu_seconds:10.0f} images/s")
    print(f"  lrpnb CPU {args.batch / cpu_seconds:10.0f} images/s -> GPU is {cpu_seconds / gpu_seconds:.1f}x")
    print(f"  GPU against CPU: max relative difference {agreement:.1e}")
    if import_zennit() is not None:
        import torch

        model_device = "cuda"

        def zennit_gpu():
            R = explain_cuda(X_torch)
            torch.cuda.synchronize()
            return R

        from zennit.composites import LayerMapComposite
        from zennit.rules import Epsilon
        from zennit.types import AvgPool, Convolution, Linear

        model = to_torch(cpu_net, X.shape).to(model_device)
        composite = LayerMapComposite([(Convolution, Epsilon(0.01)), (Linear, Epsilon(0.01)),
                                       (AvgPool, Epsilon(0.01))])
        X_torch = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2))).to(model_device)

        def explain_cuda(x):
            x = x.clone().requires_grad_(True)
            with composite.context(model) as modified:
                out = modified(x)
                start = torch.zeros_like(out)
                rows = torch.arange(len(out), device=out.device)
                target = out.argmax(1)
                start[rows, target] = out[rows, target]
                relevance, = torch.autograd.grad(out, x, start)
            return relevance

        z_seconds = best_time(zennit_gpu, 5)
        print(f"  zennit CUDA {args.batch / z_seconds:8.0f} images/s -> lrpnb GPU is {z_seconds / gpu_seconds:.1f}x")
    else:
        print("  zennit: not installed")


if __name__ == "__main__":
    main()

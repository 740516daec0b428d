"""The two compute backends, and choosing one by device name.

A backend bundles the kernel modules of one device, with the same function
names on both: ``lrpnb.kernels`` (numba.njit, CPU) and ``lrpnb.cuda``
(numba.cuda.jit, GPU). The CUDA packages are imported only when a GPU
backend is asked for.
"""
import types

from .kernels import activations, conv, dense, perturb, pool, tensors

CPU = types.SimpleNamespace(name="cpu", conv=conv, dense=dense, pool=pool, activations=activations,
                            perturb=perturb, tensors=tensors, put=lambda array: array)

DEVICES = ("cpu", "cuda", "auto")
_cuda = None


def _cuda_backend():
    global _cuda
    if _cuda is None:
        try:
            from . import cuda as package
            from .cuda import activations as gpu_activations
            from .cuda import arrays
            from .cuda import conv as gpu_conv
            from .cuda import dense as gpu_dense
            from .cuda import perturb as gpu_perturb
            from .cuda import pool as gpu_pool
            from .cuda import tensors as gpu_tensors
        except ImportError as error:
            raise RuntimeError(f"device='cuda' needs numba's CUDA target (pip install \"lrpnb[cuda]\"): "
                               f"{error}") from None
        reason = package.unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"device='cuda' needs a usable NVIDIA GPU and driver: {reason}")
        _cuda = types.SimpleNamespace(name="cuda", conv=gpu_conv, dense=gpu_dense, pool=gpu_pool,
                                      activations=gpu_activations, perturb=gpu_perturb, tensors=gpu_tensors,
                                      arrays=arrays,
                                      put=arrays.cuda.to_device)
    return _cuda


def backend(device):
    """The backend for 'cpu', 'cuda' or 'auto' (the GPU when one is usable)."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; use one of {DEVICES}")
    if device == "cpu":
        return CPU
    if device == "cuda":
        return _cuda_backend()
    try:
        return _cuda_backend()
    except RuntimeError:
        return CPU

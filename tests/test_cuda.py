"""The GPU backend without a GPU: its kernels under the CUDA simulator (in a
process of their own), every kernel compiled to PTX for sm_90, and the
errors a user sees without a usable GPU."""
import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

import lrpnb
from conftest import EXAMPLES, ROOT


def test_kernels_under_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(ROOT / "tests" / "sim_cuda.py")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


def _signature(kinds, dtype):
    from numba import types

    scalar = types.float32 if dtype == np.float32 else types.float64
    table = {"F": scalar, "I": types.int64, "B": types.boolean,
             "I1": types.Array(types.int64, 1, "C"), "I2": types.Array(types.int64, 2, "C"),
             "D1": types.Array(types.float64, 1, "C"), "D2": types.Array(types.float64, 2, "C")}
    return tuple(table[kind] if kind in table else types.Array(scalar, int(kind[1:]), "C")
                 for kind in kinds.split())


#: every GPU kernel module (found on the disk: a new module is tested without being listed here)
MODULES = sorted(path.stem for path in (ROOT / "lrpnb" / "cuda").glob("*.py")
                 if path.stem != "__init__" and "SIGNATURES" in path.read_text())
#: the kernel modules that exist on both devices (``rules``: the per-element
#: helpers each device compiles in its own way, not kernels)
TWINS = sorted(path.stem for path in (ROOT / "lrpnb" / "kernels").glob("*.py")
               if path.stem not in ("__init__", "rules") and (ROOT / "lrpnb" / "cuda" / path.name).exists())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("module", MODULES)
def test_every_kernel_compiles_to_ptx(module, dtype):
    # numba-cuda[cu13] (in the test extra) brings NVVM: compiling needs no GPU
    pytest.importorskip("numba_cuda", reason="needs numba-cuda (pip install \".[test]\")")
    from numba import cuda

    kernels = importlib.import_module(f"lrpnb.cuda.{module}").SIGNATURES
    assert kernels
    for kernel, kinds in kernels.items():
        ptx, _ = cuda.compile_ptx(kernel.py_func, _signature(kinds, dtype), cc=(9, 0))
        assert ".target sm_90" in ptx and ".entry" in ptx, kernel.py_func.__name__


def test_every_cpu_kernel_has_its_gpu_twin():
    assert {"conv", "dense", "pool", "activations", "gates", "norm", "channels", "conv_transpose"} <= set(TWINS)
    for module in TWINS:
        cpu = importlib.import_module(f"lrpnb.kernels.{module}")
        gpu = importlib.import_module(f"lrpnb.cuda.{module}")
        public = sorted(name for name, obj in vars(cpu).items()
                        if callable(obj) and not name.startswith("_")
                        and getattr(obj, "__module__", None) == cpu.__name__)
        assert public or module == "dense", module
        missing = [name for name in public if not callable(getattr(gpu, name, None))]
        assert not missing, f"lrpnb.cuda.{module} lacks {missing}"


def test_cuda_without_a_gpu_is_a_clear_error():
    from lrpnb.cuda import unavailable_reason

    if unavailable_reason() is None:
        pytest.skip("this machine has a usable GPU")
    with pytest.raises(RuntimeError, match="device='cuda' needs a usable NVIDIA GPU and driver: "):
        lrpnb.load(EXAMPLES / "mlp.txt", device="cuda")
    with pytest.raises(RuntimeError, match="NVIDIA GPU"):
        lrpnb.load(EXAMPLES / "mlp.txt").to("cuda")


def test_auto_and_unknown_devices():
    net = lrpnb.load(EXAMPLES / "mlp.txt", device="auto")
    assert net.device in ("cpu", "cuda")
    with pytest.raises(ValueError, match=r"unknown device 'tpu'; use one of \('cpu', 'cuda', 'auto'\)"):
        net.to("tpu")


class _GpuArray:
    """Stands for a CuPy array or a PyTorch CUDA tensor."""
    __cuda_array_interface__ = {"shape": (1, 4), "typestr": "<f8", "data": (0, False), "version": 3}


def test_cpu_network_refuses_gpu_arrays():
    with pytest.raises(ValueError, match="X is a GPU array but the network is on the CPU; call net.to"):
        lrpnb.load(EXAMPLES / "mlp.txt").explain(_GpuArray())

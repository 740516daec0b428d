"""The compute backends: one Backend type, a CPU and a GPU instance.

A backend bundles the kernel modules of one device, with the same function
names on both: ``lrpnb.kernels`` (numba.njit, CPU) and ``lrpnb.cuda``
(numba.cuda.jit, GPU), and moves arrays to its device and back through its
``arrays`` module (also twins). The layers and the explain passes ask a
backend, never which device it is. The CUDA packages are imported only when
a GPU backend is asked for.
"""
from . import kernels
from .kernels import activations, arrays, conv, dense, perturb, pool, tensors  # noqa: F401  (the CPU's modules)
from .kernels import gates, norm  # noqa: F401  (the CPU's modules)
from .kernels import channels  # noqa: F401  (GatherChannels)
from .kernels import conv_transpose  # noqa: F401  (the transposed convolution's element-wise steps)
from .kernels import depthwise  # noqa: F401  (depthwise convolutions, all channels at once)
from .kernels import tokens  # noqa: F401  (Embedding, Rearrange, Bias)
from .kernels import attention  # noqa: F401  (MatMul of two activations, the attention softmax's relevance)

__all__ = ["Backend", "CPU", "DEVICES", "as_input", "backend"]

DEVICES = ("cpu", "cuda", "auto")

#: rows (samples x targets) per relevance pass when explaining several targets
#: on the CPU (measured on LeNet-5: 256 keeps the activations in cache)
CPU_TARGET_ROWS = 256


class Backend:
    """The kernels of one device and the moving of arrays to it and back.

    Parameters
    ----------
    name : {'cpu', 'cuda'}
    modules : module namespace
        A package whose modules ``activations``, ``arrays``, ``conv``,
        ``dense``, ``perturb``, ``pool`` and ``tensors`` hold the kernels,
        with ``gates`` (Scale, Mul), ``norm`` (LayerNorm) and ``depthwise``
        (depthwise convolutions, the functions of ``conv``), ``attention``
        (MatMul, AttentionSoftmax).
    target_rows : int or None
        Rows (samples x targets) per relevance pass when explaining several
        targets; None for all at once.
    memory_bound : bool
        Whether a batch is explained in parts that fit the free device
        memory (the GPU's memory is small beside the host's).
    """

    def __init__(self, name, modules, target_rows, memory_bound):
        self.name = name
        self.activations, self.arrays, self.conv = modules.activations, modules.arrays, modules.conv
        self.dense, self.perturb, self.pool = modules.dense, modules.perturb, modules.pool
        self.tensors = modules.tensors
        self.gates, self.norm = modules.gates, modules.norm
        self.channels = modules.channels
        self.conv_transpose = modules.conv_transpose
        self.depthwise = modules.depthwise
        self.tokens = modules.tokens
        self.attention = modules.attention
        self.target_rows = target_rows
        self.memory_bound = memory_bound

    def __repr__(self):
        return f"<Backend {self.name}>"

    def __reduce__(self):
        return backend, (self.name,)

    def put(self, array):
        """A host array on this device."""
        return self.arrays.put(array)

    def to_host(self, array):
        """An array of this device as a numpy array."""
        return self.arrays.to_host(array)

    def input(self, X, what="X"):
        """(X on this device, the kind of array to answer with), checked: a
        batch (N, ...) with N >= 1 of finite float32 or float64 values
        (other numeric dtypes become float64). On the GPU, numpy input is
        copied there and GPU arrays (``__cuda_array_interface__``) are used
        in place."""
        X, kind = self.arrays.to_device(X, what)
        if X.ndim < 2 or X.shape[0] == 0:
            raise ValueError(f"{what} must be a batch of shape (N, ...) with N >= 1, got shape {X.shape}")
        bad = self.arrays.first_nonfinite_sample(X)
        if bad is not None:
            raise ValueError(f"{what} contains NaN or infinite values (first in sample {bad})")
        return X, kind

    def output(self, array, kind):
        """A result as the kind of array the caller passed in."""
        return self.arrays.from_device(array, kind)

    def concatenate(self, parts):
        """Arrays of this device joined along the first axis."""
        return self.arrays.concatenate(parts)

    def repeat(self, array, times):
        """Each sample ``times`` times in a row, on this device."""
        return self.arrays.repeat(array, times)

    def free_memory(self):
        """Bytes of free memory on this device."""
        return self.arrays.free_memory()

    def target_group(self, samples, targets):
        """How many targets one relevance pass of ``samples`` rows explains."""
        if self.target_rows is None:
            return targets
        return max(1, min(targets, self.target_rows // samples))


CPU = Backend("cpu", kernels, CPU_TARGET_ROWS, memory_bound=False)

_cuda = None


def _cuda_backend():
    global _cuda
    if _cuda is None:
        try:
            from . import cuda as package
            from .cuda import activations, arrays, conv, dense, perturb, pool, tensors  # noqa: F401
            from .cuda import gates, norm  # noqa: F401
            from .cuda import channels  # noqa: F401
            from .cuda import conv_transpose  # noqa: F401
            from .cuda import depthwise  # noqa: F401
            from .cuda import tokens  # noqa: F401
            from .cuda import attention  # noqa: F401
        except ImportError as error:
            raise RuntimeError(f"device='cuda' needs numba's CUDA target (pip install \"lrpnb[cuda]\"): "
                               f"{error}") from None
        reason = package.unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"device='cuda' needs a usable NVIDIA GPU and driver: {reason}")
        _cuda = Backend("cuda", package, None, memory_bound=True)
    return _cuda


def backend(device):
    """The backend for 'cpu', 'cuda' or 'auto' (the GPU when one is usable)."""
    if isinstance(device, Backend):
        return device
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


def as_input(X, what="X"):
    """``X`` as a checked C-contiguous float32/float64 numpy batch (other
    dtypes become float64); ValueError saying what is wrong."""
    return CPU.input(X, what)[0]

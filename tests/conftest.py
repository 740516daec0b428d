import os
import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Derandomized so a CI run is repeatable; no deadline because the first
# example of each kernel includes its compilation.
settings.register_profile("lrpnb", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "lrpnb"))

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("LRPNB_SHARED", ROOT.parent / "shared"))
MODELS = SHARED / "formats" / "models"
DATA = SHARED / "formats" / "data"
REFERENCE = SHARED / "reference" / "lenet5.npz"
EXAMPLES = ROOT / "formats" / "examples"


def need_shared(path):
    """Skip (saying why) when a file from ../shared is absent: the whole
    folder, or only that file (a partial copy)."""
    if not path.exists():
        if not SHARED.is_dir():
            pytest.skip(f"needs {path} from the shared folder beside the repository ({SHARED}, or "
                        f"$LRPNB_SHARED), which is absent here")
        pytest.skip(f"needs {path}, which the shared folder {SHARED} does not hold (a partial copy)")
    return path


def relative_error(actual, expected):
    """max |actual - expected| / max |expected| (0 when both are all zero)."""
    scale = np.abs(expected).max()
    diff = np.abs(np.asarray(actual, dtype=np.float64) - expected).max()
    return diff / scale if scale > 0 else diff


#: relative tolerances of the layer tests against tests/naive.py
LAYER_TOLERANCE = {np.float64: 1e-12, np.float32: 2e-5}


def close(actual, expected, dtype):
    """``actual`` has ``dtype``, the reference's shape, and its values within
    LAYER_TOLERANCE[dtype] of the largest reference value."""
    assert actual.dtype == dtype and actual.shape == expected.shape
    scale = max(np.abs(expected).max(), 1e-300)
    assert np.abs(actual.astype(np.float64) - expected).max() / scale <= LAYER_TOLERANCE[dtype]


def normal(rng, *shape, dtype=np.float64):
    """Standard normal values of ``shape`` from ``rng``, in ``dtype``."""
    return rng.normal(size=shape).astype(dtype)


@pytest.fixture(scope="module")
def cluster():
    """A local Dask cluster of 2 worker processes (this machine's 2 cores),
    one for each test module that asks for it."""
    import logging

    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.CRITICAL) as made:
        yield made


@pytest.fixture()
def client(cluster):
    """A Dask client of the module's cluster."""
    import distributed

    with distributed.Client(cluster) as made:
        yield made


def toolbox_digits(count):
    """The first ``count`` MNIST test digits as the toolbox's LeNet-5 sees them:
    scaled to [-1, 1] and padded with -1 to 32x32."""
    import lrpnb

    images = lrpnb.read_data(need_shared(DATA / "test_images.mat"))[:count]
    X = images.reshape(-1, 28, 28, 1) / 127.5 - 1.0
    return np.pad(X, ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=-1.0)


def interrupting(explain, at):
    """``explain`` that raises KeyboardInterrupt at its ``at``-th call: Ctrl-C
    while that batch of a dataset run is explained (to test resuming)."""
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            raise KeyboardInterrupt
        return explain(*args, **kwargs)

    return interrupted

"""The same explanation on the main thread and on a worker thread: bit-identical
with one BLAS thread (docs/rules.md, "Bit-identical results across threads")."""
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import lrpnb
from lrpnb.digits import synthetic_digits


@pytest.mark.parametrize("rule, param", [("epsilon", 0.01), ("alphabeta", 2.0), ("zb", (-1.0, 1.0))])
def test_one_blas_thread_gives_the_same_bits_on_every_thread(rule, param):
    net = lrpnb.load("lenet5_synthetic")
    for layer in net.layers:
        for name, value in list(vars(layer).items()):
            if isinstance(value, np.ndarray) and value.dtype == np.float32:
                setattr(layer, name, value.astype(np.float64))
    X = synthetic_digits(32, seed=3).images.astype(np.float64)
    with threadpool_limits(1, user_api="blas"):
        main = net.explain(X, rule=rule, param=param)
        worker = {}
        thread = threading.Thread(target=lambda: worker.update(R=net.explain(X, rule=rule, param=param)))
        thread.start()
        thread.join()
    assert main.dtype == np.float64 and np.abs(main).max() > 0
    np.testing.assert_array_equal(worker["R"], main)

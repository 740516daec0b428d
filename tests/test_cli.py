"""The console script, run for real in a subprocess."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import lrpnb
from conftest import EXAMPLES, ROOT


def run(*args):
    exe = shutil.which("lrpnb")
    command = [exe] if exe else [sys.executable, "-m", "lrpnb"]
    # the console script imports the lrpnb under test (this checkout), whose
    # compiled kernels the test process has already cached
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run(command + list(args), capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.parametrize("rule, param", [(None, None), ("epsilon", "0.01"), ("alphabeta", "2")])
def test_explain_writes_what_explain_computes(tmp_path, rule, param):
    out = tmp_path / "relevance.npy"
    extra = (["--rule", rule] if rule else []) + (["--param", param] if param else [])
    result = run("explain", "--model", str(EXAMPLES / "tiny_cnn.txt"),
                 "--data", str(EXAMPLES / "tiny_cnn_inputs.npy"), "--out", str(out),
                 "--batch-size", "5", *extra)
    assert result.returncode == 0, result.stderr
    assert "explained 16 samples" in result.stdout
    net = lrpnb.load(EXAMPLES / "tiny_cnn.txt")
    expected = net.explain(np.load(EXAMPLES / "tiny_cnn_inputs.npy"), rule=rule,
                           param=None if param is None else float(param))
    # batches of 5 against one batch of 16: BLAS may round the last bit differently
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-12, atol=1e-15)


def test_explain_text_data(tmp_path):
    result = run("explain", "--model", str(EXAMPLES / "mlp.txt"), "--data",
                 str(EXAMPLES / "mlp_inputs.txt"), "--out", str(tmp_path / "r.txt"))
    assert result.returncode == 0, result.stderr
    assert np.loadtxt(tmp_path / "r.txt").shape == (5, 4)


@pytest.mark.parametrize("args, message", [
    (["--model", "absent.txt"], "model file not found: absent.txt"),
    (["--rule", "magic"], "unknown LRP rule 'magic'"),
    (["--rule", "epsilon"], "needs a parameter"),
    (["--data", str(EXAMPLES / "mlp_inputs.txt")],
     r"mlp_inputs.txt: samples of 4 values do not fit the model, which takes 8 x 8 x 1 images"),
    (["--out", "relevance.txt"], r"relevance.txt: a .txt file holds at most 2 dimensions"),
])
def test_explain_errors(tmp_path, args, message):
    base = {"--model": str(EXAMPLES / "tiny_cnn.txt"), "--data": str(EXAMPLES / "tiny_cnn_inputs.npy"),
            "--out": str(tmp_path / "r.npy")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = str(tmp_path / value) if flag == "--out" else value
    result = run("explain", *[item for pair in base.items() for item in pair])
    assert result.returncode == 1
    assert "lrpnb explain: error:" in result.stderr
    assert __import__("re").search(message, result.stderr), result.stderr
    assert not (tmp_path / "r.npy").exists() and not (tmp_path / "relevance.txt").exists()


def test_help():
    result = run("explain", "--help")
    assert result.returncode == 0
    for flag in ("--model", "--data", "--out", "--rule", "--param"):
        assert flag in result.stdout

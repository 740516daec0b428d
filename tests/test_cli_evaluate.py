"""``lrpnb evaluate``, run for real in a subprocess: the table, the HDF5
curves and the plot agree with lrpnb.evaluate; errors come before any work."""
import json

import h5py
import numpy as np
import pytest

import lrpnb
from conftest import EXAMPLES
from lrpnb import evaluate
from test_cli import run

MODEL, DATA = str(EXAMPLES / "tiny_cnn.txt"), str(EXAMPLES / "tiny_cnn_inputs.npy")
SETTINGS = ["--region", "2", "2", "--steps", "5", "--replace", "0", "--seed", "3"]


def test_rules_are_compared_with_random_and_written(tmp_path):
    out, plot = tmp_path / "curves.h5", tmp_path / "curves.png"
    result = run("evaluate", "--model", MODEL, "--data", DATA, "--rule", "epsilon:0.01", "--rule", "flat",
                 *SETTINGS, "--out", str(out), "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "2 x 2 regions (16), 5 steps, most relevant first, replaced by 0, seed 3" in lines[0]
    assert [line.split()[0] for line in lines[2:5]] == ["epsilon", "flat", "random"]
    net = lrpnb.load(MODEL)
    X = np.load(DATA)
    expected = evaluate.perturbation_curve(net, X, net.explain(X, rule="epsilon", param=0.01), region=2,
                                           steps=5, replace=0.0, seed=3)
    aopc = evaluate.aopc(expected)
    numbers = [line.split()[2:] for line in lines[2:5]]
    places = {len(word.rpartition(".")[2]) for row in numbers for word in row if word != ".."}
    assert len(places) == 1  # one precision for the whole table
    assert float(numbers[0][0]) == pytest.approx(aopc, abs=0.51 * 10.0 ** -places.pop())
    with h5py.File(out, "r") as handle:
        assert json.loads(handle.attrs["methods"]) == ["epsilon 0.01", "flat", "random"]
        assert handle["curves"].shape == (3, 16, 6)
        np.testing.assert_allclose(handle["curves"][0], expected, rtol=1e-12)
        np.testing.assert_allclose(handle["aopc"][0], evaluate.aopc(expected, per_sample=True), rtol=1e-12)
        np.testing.assert_array_equal(handle["target"][...], net.scores(X).argmax(axis=1))
        np.testing.assert_array_equal(handle["index"][...], np.arange(16))
        settings = json.loads(handle.attrs["settings"])
        # how it was made (lrpnb.provenance)
        import hashlib

        assert handle.attrs["command"] == "evaluate" and handle.attrs["model"] == MODEL
        assert handle.attrs["model_sha256"] == hashlib.sha256(open(MODEL, "rb").read()).hexdigest()
        assert list(handle.attrs["method"]) == ["epsilon 0.01", "flat"]
        assert settings["steps"] == 5 and settings["order"] == "morf" and settings["replace"] == 0.0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the outputs exist now: a second run is refused, and --overwrite replaces them
    again = run("evaluate", "--model", MODEL, "--data", DATA, "--rule", "flat", *SETTINGS, "--out", str(out))
    assert again.returncode == 1 and f"{out} exists; remove it or pass --overwrite" in again.stderr
    again = run("evaluate", "--model", MODEL, "--data", DATA, "--rule", "flat", *SETTINGS, "--out", str(out),
                "--overwrite")
    assert again.returncode == 0, again.stderr
    with h5py.File(out, "r") as handle:
        assert handle["curves"].shape == (2, 16, 6)


def test_maps_of_an_explain_result(tmp_path):
    maps = tmp_path / "R.h5"
    result = run("explain", "--model", MODEL, "--data", DATA, "--out", str(maps), "--rule", "alphabeta",
                 "--param", "2", "--target", "1")
    assert result.returncode == 0, result.stderr
    result = run("evaluate", "--model", MODEL, "--data", DATA, "--relevance", str(maps), *SETTINGS,
                 "--order", "lerf", "--out", str(tmp_path / "c.h5"))
    assert result.returncode == 0, result.stderr
    assert "least relevant first" in result.stdout and "R.h5" in result.stdout
    net, X = lrpnb.load(MODEL), np.load(DATA)
    R = net.explain(X, target=1, rule="alphabeta", param=2.0)
    expected = evaluate.perturbation_curve(net, X, R, target=1, region=2, steps=5, order="lerf", replace=0.0,
                                           seed=3)
    with h5py.File(tmp_path / "c.h5", "r") as handle:
        np.testing.assert_allclose(handle["curves"][0], expected, rtol=1e-12)
        np.testing.assert_array_equal(handle["target"][...], np.ones(16))
    # maps of other samples are refused
    other = tmp_path / "other.npy"
    np.save(other, np.concatenate([X, X]))
    result = run("evaluate", "--model", MODEL, "--data", str(other), "--relevance", str(maps), *SETTINGS)
    assert result.returncode == 1
    assert f"--relevance {maps}: holds 16 rows for the 32 samples of {other}" in result.stderr


def test_defaults_explain_the_embedded_lenet_on_synthetic_digits():
    result = run("evaluate", "--count", "12", "--region", "4", "4", "--steps", "6")
    assert result.returncode == 0, result.stderr
    assert "lenet5_synthetic.txt on 12 held-out synthetic digits" in result.stdout
    methods = [line.split()[0] for line in result.stdout.splitlines()[2:7]]
    assert methods == ["epsilon", "alphabeta", "flat", "gradient", "random"]


@pytest.mark.parametrize("args, message", [
    (["--rule", "epsilon:x"], "--rule 'epsilon:x': the parameter after ':' must be a number, or LOW,HIGH"),
    (["--rule", "alphabeta:0.5"], "alpha"),
    (["--rule", "magic"], "magic"),
    (["--replace", "noise"], "--replace must be one of uniform, mean, blur or a number, got 'noise'"),
    (["--target", "all"], "a perturbation curve follows one class per sample"),
    (["--region", "9", "9"], "region 9 x 9 must be at least 1 x 1 and fit the input's 8 x 8 pixels"),
    (["--steps", "17", "--region", "2", "2"], "steps must be an int from 1 to the 16 regions of 2 x 2"),
    (["--relevance", "R.h5", "--rule", "flat"], "give --relevance (maps from lrpnb explain) or --rule, not both"),
    (["--out", "curves.npy"], "curves.npy: write .h5 or .hdf5"),
    (["--out", DATA.replace(".npy", ".h5"), "--plot", "x.svg"], "x.svg: write .png"),
    (["--count", "0"], "--count must be >= 1, got 0"),
])
def test_errors(tmp_path, args, message):
    result = run("evaluate", "--model", MODEL, "--data", DATA, *args)
    assert result.returncode in (1, 2), result.stdout
    assert message in result.stderr


def test_model_without_data_and_outputs_that_are_inputs(tmp_path):
    result = run("evaluate", "--model", MODEL)
    assert result.returncode == 1 and "--data is needed with --model" in result.stderr
    result = run("evaluate", "--model", MODEL, "--data", DATA, "--out", MODEL.replace(".txt", ".h5"),
                 "--plot", str(tmp_path / "missing" / "c.png"))
    assert result.returncode == 1 and "folder" in result.stderr and "does not exist" in result.stderr
    copy = tmp_path / "data.h5"
    with h5py.File(copy, "w") as handle:
        handle["x"] = np.load(DATA)
    result = run("evaluate", "--model", MODEL, "--data", f"{copy}:x", "--rule", "flat", *SETTINGS,
                 "--out", str(copy), "--overwrite")
    assert result.returncode == 1 and "is an input of this command" in result.stderr
    with h5py.File(copy, "r") as handle:
        assert list(handle) == ["x"]

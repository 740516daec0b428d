"""``lrpnb.explain_dataset`` and ``lrpnb.evaluate_dataset``: the runs of
``lrpnb explain`` and ``lrpnb evaluate`` from Python, bit for bit the same
files as the commands write."""
import re

import h5py
import numpy as np
import pytest

import lrpnb
from lrpnb.cli import main
from lrpnb.digits import synthetic_digits
from lrpnb.targets import Target
from conftest import interrupting

MODEL = "lenet5_synthetic"


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "digits.npy"
    np.save(path, synthetic_digits(20, seed=5).images)
    return path


def _datasets(path):
    with h5py.File(path, "r") as handle:
        return {name: handle[name][...] for name in handle}


def _without_timing(text):
    """The output of a run with its times and rates left out."""
    return re.sub(r"[\d.,]+ s\b|\([\d,]+ samples/s\)|\([\d,]+/s\)", "T", text)


@pytest.mark.parametrize("options, keywords", [
    ([], {}),
    (["--rule", "epsilon", "--param", "0.01", "--target", "top:2"], dict(rule="epsilon", param=0.01, target="top:2")),
    (["--composite", "EpsilonPlus", "--target", "3"], dict(composite="EpsilonPlus", target=Target("class", 3))),
])
def test_explain_dataset_writes_the_hdf5_file_of_the_command(tmp_path, digits, capsys, options, keywords):
    command = tmp_path / "command.h5"
    assert main(["explain", "--model", MODEL, "--data", str(digits), "--out", str(command), "--batch-size", "8",
                 *options]) == 0
    printed = capsys.readouterr().out
    library = tmp_path / "library.h5"
    summary = lrpnb.explain_dataset(MODEL, digits, library, batch_size=8, **keywords)
    assert _without_timing(capsys.readouterr().out) == _without_timing(printed).replace(str(command), str(library))
    expected, actual = _datasets(command), _datasets(library)
    assert sorted(actual) == sorted(expected) == ["prediction", "relevance", "scores", "target"]
    for name in expected:
        assert actual[name].dtype == expected[name].dtype
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
    assert (summary.count, summary.explained, summary.failures) == (20, 20, 0)


def test_explain_dataset_writes_the_npy_file_of_the_command_from_a_loaded_network(tmp_path, digits, capsys):
    command, library = tmp_path / "command.npy", tmp_path / "library.npy"
    assert main(["explain", "--model", MODEL, "--data", str(digits), "--out", str(command), "--batch-size", "7",
                 "--rule", "alphabeta", "--param", "2", "--target", "all"]) == 0
    summary = lrpnb.explain_dataset(lrpnb.load(MODEL), digits, library, batch_size=7, rule="alphabeta",
                                    param="2", target="all", verbose=False)
    assert capsys.readouterr().out.count("explained 20 samples") == 1  # the command's line only
    expected, actual = np.load(command), np.load(library)
    assert actual.dtype == expected.dtype and actual.shape == (20, 10, 32, 32, 1)
    np.testing.assert_array_equal(actual, expected)
    assert summary.method == "the alphabeta 2 rule"


def test_explain_dataset_refuses_as_the_command_does(tmp_path, digits):
    with pytest.raises(ValueError, match="--batch-size must be >= 1"):
        lrpnb.explain_dataset(MODEL, digits, tmp_path / "r.h5", batch_size=0)
    with pytest.raises(ValueError, match="either --rule .* or --composite"):
        lrpnb.explain_dataset(MODEL, digits, tmp_path / "r.h5", rule="epsilon", composite="EpsilonPlus")
    (tmp_path / "r.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="exists; remove it or pass --overwrite"):
        lrpnb.explain_dataset(MODEL, digits, tmp_path / "r.h5")


def test_an_interrupted_explain_dataset_resumes(tmp_path, digits, capsys):
    net = lrpnb.load(MODEL)
    explain = net.explain
    net.explain = interrupting(explain, 3)  # Ctrl-C while the third batch is explained
    out = tmp_path / "r.h5"
    with pytest.raises(KeyboardInterrupt):
        lrpnb.explain_dataset(net, digits, out, batch_size=4)
    assert not out.exists() and (tmp_path / "r.h5.partial").exists()
    assert "interrupted after 8 of 20 samples" in capsys.readouterr().err
    # another Network with the same parameters continues the run
    summary = lrpnb.explain_dataset(lrpnb.load(MODEL), digits, out, batch_size=4)
    assert "resuming" in capsys.readouterr().err and summary.explained == 12
    whole = tmp_path / "whole.h5"
    lrpnb.explain_dataset(MODEL, digits, whole, batch_size=4, verbose=False)
    expected, actual = _datasets(whole), _datasets(out)
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
    # a network with other parameters does not continue another's run
    with pytest.raises(KeyboardInterrupt):
        net.explain = interrupting(explain, 3)
        lrpnb.explain_dataset(net, digits, tmp_path / "other.h5", batch_size=4)
    changed = lrpnb.load(MODEL)
    changed.layers[0].W[0, 0, 0, 0] += 1
    with pytest.raises(ValueError, match="other settings"):
        lrpnb.explain_dataset(changed, digits, tmp_path / "other.h5", batch_size=4)


def test_evaluate_dataset_writes_the_curves_of_the_command(tmp_path, capsys):
    command, library = tmp_path / "command.h5", tmp_path / "library.h5"
    assert main(["evaluate", "--count", "12", "--rule", "epsilon:0.01", "--rule", "flat", "--region", "8", "8",
                 "--out", str(command)]) == 0
    printed = capsys.readouterr().out
    result = lrpnb.evaluate_dataset(count=12, rule=["epsilon:0.01", "flat"], region=(8, 8), out=library)
    assert _without_timing(capsys.readouterr().out) == _without_timing(printed).replace(str(command), str(library))
    expected, actual = _datasets(command), _datasets(library)
    assert sorted(actual) == sorted(expected) == ["aopc", "curves", "index", "target"]
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
    with h5py.File(command, "r") as a, h5py.File(library, "r") as b:
        def attributes(handle):  # all but the time each was made
            return {key: np.asarray(value).tolist() for key, value in handle.attrs.items() if key != "created"}

        assert attributes(a) == attributes(b) and a.attrs["command"] == "evaluate"
    assert list(result.curves) == ["epsilon 0.01", "flat", "random"]
    np.testing.assert_array_equal(np.stack(list(result.curves.values())), expected["curves"])
    np.testing.assert_array_equal(result.target, expected["target"])
    assert result.aopc()["random"] == pytest.approx(float(expected["aopc"][-1].mean()))


def test_evaluate_dataset_follows_the_labels_of_a_file_and_a_network_given(tmp_path, digits, capsys):
    labels = tmp_path / "labels.npy"
    np.save(labels, synthetic_digits(20, seed=5).labels)
    command, library = tmp_path / "command.h5", tmp_path / "library.h5"
    assert main(["evaluate", "--model", MODEL, "--data", str(digits), "--target", f"label:{labels}",
                 "--rule", "gradient", "--steps", "5", "--replace", "mean", "--out", str(command)]) == 0
    result = lrpnb.evaluate_dataset(lrpnb.load(MODEL), digits, target=f"label:{labels}", rule="gradient",
                                    steps=5, replace="mean", out=library, verbose=False)
    assert "wrote" not in capsys.readouterr().out.replace(f"wrote {command}", "")
    expected, actual = _datasets(command), _datasets(library)
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
    np.testing.assert_array_equal(result.target, synthetic_digits(20, seed=5).labels)
    with pytest.raises(ValueError, match="one class per sample"):
        lrpnb.evaluate_dataset(target="all", count=2)

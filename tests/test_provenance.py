"""Results that say how they were made (lrpnb.provenance): every result of
explain_dataset and evaluate_dataset records its model and the model's
SHA-256, the method, target, normalisation, data, lrpnb version and date,
and ``lrpnb info RESULT`` prints it."""
import datetime
import hashlib
import json

import h5py
import numpy as np
import pytest

import lrpnb
from lrpnb import provenance
from lrpnb.cli import main
from lrpnb.digits import synthetic_digits
from lrpnb.model_io import model_path

MODEL = "lenet5_synthetic"


@pytest.fixture
def digits(tmp_path):
    path = tmp_path / "digits.npy"
    np.save(path, synthetic_digits(6, seed=3).images)
    return path


def model_digest():
    with open(model_path(MODEL), "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_an_hdf5_result_holds_its_record_as_attributes(tmp_path, digits):
    out = tmp_path / "r.h5"
    lrpnb.explain_dataset(MODEL, digits, out, rule="epsilon", param=0.01, target="3", mean=0.5, std=[2.0],
                          verbose=False)
    with h5py.File(out, "r") as handle:
        attrs = dict(handle.attrs)
    assert attrs["command"] == "explain" and attrs["lrpnb_version"] == lrpnb.__version__
    assert attrs["model_sha256"] == model_digest() and attrs["model"].endswith("lenet5_synthetic.txt")
    assert attrs["method"] == "the epsilon 0.01 rule" and attrs["target"] == "3"
    assert attrs["data"] == str(digits) and attrs["samples"] == 6
    np.testing.assert_array_equal(attrs["mean"], [0.5])
    np.testing.assert_array_equal(attrs["std"], [2.0])
    np.testing.assert_array_equal(attrs["input_range"], [-1.0, 1.0])
    made = datetime.datetime.fromisoformat(attrs["created"])
    assert abs(datetime.datetime.now(datetime.timezone.utc) - made).total_seconds() < 600
    assert provenance.read(out)["std"] == [2.0]


@pytest.mark.parametrize("ext", [".npy", ".npz", ".mat", ".txt"])
def test_formats_without_attributes_get_a_side_car(tmp_path, ext):
    data = tmp_path / "digits.npy"
    np.save(data, synthetic_digits(3, seed=3).images.reshape(3, -1)[:, :1024].reshape(3, 32, 32, 1))
    out = tmp_path / f"r{ext}"
    if ext == ".txt":  # a .txt file holds 2 dimensions: explain vectors
        net = lrpnb.Network([lrpnb.Linear(np.eye(4, 3, dtype=np.float32), np.zeros(3, np.float32))])
        np.save(data, np.arange(12, dtype=np.float32).reshape(3, 4))
        lrpnb.explain_dataset(net, data, out, verbose=False)
    else:
        lrpnb.explain_dataset(MODEL, data, out, composite="EpsilonPlus", verbose=False)
    side = tmp_path / f"r{ext}.provenance.json"
    record = json.loads(side.read_text())
    assert record["format"] == "lrpnb provenance 1" and record["result"] == out.name
    assert record["command"] == "explain" and len(record["model_sha256"]) == 64
    if ext != ".txt":
        assert record["model_sha256"] == model_digest() and record["method"] == "the EpsilonPlus composite"
    else:
        assert record["model"].startswith("a Network given in Python")


def test_lrpnb_info_shows_how_a_result_was_made(tmp_path, digits, capsys):
    h5, npy = tmp_path / "r.h5", tmp_path / "r.npy"
    assert main(["explain", "--model", MODEL, "--data", str(digits), "--out", str(h5), "--rule", "alphabeta",
                 "--param", "2"]) == 0
    assert main(["explain", "--model", MODEL, "--data", str(digits), "--out", str(npy)]) == 0
    capsys.readouterr()
    assert main(["info", str(h5)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"result: {h5}"
    assert any(line.split()[:2] == ["relevance", "6"] and "float32" in line for line in lines)
    assert f"model_sha256: {model_digest()}" in lines
    assert any(line.startswith("method: ") and "alphabeta" in line for line in lines)
    assert main(["info", str(npy)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "relevance    6 x 32 x 32 x 1" in "\n".join(lines) and "command: explain" in lines


def test_an_existing_side_car_is_not_overwritten_unasked(tmp_path, digits):
    side = tmp_path / "r.npy.provenance.json"
    side.write_text("precious")
    with pytest.raises(ValueError, match="r.npy.provenance.json exists; remove it or pass --overwrite"):
        lrpnb.explain_dataset(MODEL, digits, tmp_path / "r.npy", verbose=False)
    assert side.read_text() == "precious" and not (tmp_path / "r.npy").exists()
    lrpnb.explain_dataset(MODEL, digits, tmp_path / "r.npy", overwrite=True, verbose=False)
    assert json.loads(side.read_text())["command"] == "explain"


def test_a_side_car_that_leads_to_an_input_is_never_written(tmp_path, digits):
    (tmp_path / "r.npy.provenance.json").symlink_to(digits)
    before = digits.read_bytes()
    with pytest.raises(ValueError, match="is an input of this command"):
        lrpnb.explain_dataset(MODEL, digits, tmp_path / "r.npy", overwrite=True, verbose=False)
    assert digits.read_bytes() == before and not (tmp_path / "r.npy").exists()


@pytest.mark.parametrize("text", ["{", "[]", '{"format": "something else"}', "\xff"])
def test_a_damaged_side_car_is_a_clear_error(tmp_path, text):
    np.save(tmp_path / "r.npy", np.zeros((1, 2), np.float32))
    (tmp_path / "r.npy.provenance.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match="r.npy.provenance.json"):
        provenance.read(tmp_path / "r.npy")


def test_a_model_without_a_record_is_still_described_as_a_model(capsys):
    assert main(["info", MODEL]) == 0
    assert capsys.readouterr().out.startswith("model: ")


@pytest.mark.parametrize("damage", ["truncated", "zeroed"])
def test_a_damaged_hdf5_result_is_a_clear_error_for_info_and_evaluate(tmp_path, digits, capsys, damage):
    out = tmp_path / "r.h5"
    lrpnb.explain_dataset(MODEL, digits, out, verbose=False)
    data = bytearray(out.read_bytes())
    if damage == "truncated":
        data = data[:len(data) // 3]
    else:
        data[512:4096] = bytes(4096 - 512)
    out.write_bytes(bytes(data))
    status = main(["info", str(out)])
    err = capsys.readouterr().err
    assert status == 1 and len(err.splitlines()) == 1 and str(out) in err and "Traceback" not in err
    status = main(["evaluate", "--model", MODEL, "--data", str(digits), "--relevance", str(out)])
    err = capsys.readouterr().err
    assert status == 1 and str(out) in err and "Traceback" not in err

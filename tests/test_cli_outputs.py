"""The command line as a user meets it: nothing overwritten without
--overwrite, no input ever overwritten, a failed validation leaves no file,
every option usable, data converted one documented way (run in subprocesses)."""
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from PIL import Image

import lrpnb
from conftest import EXAMPLES
from test_cli import run

TINY, TINY_DATA = str(EXAMPLES / "tiny_cnn.txt"), str(EXAMPLES / "tiny_cnn_inputs.npy")


def digit_png(path, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(8, 8), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(path)


# ---------------------------------------------------------------- nothing overwritten
@pytest.mark.parametrize("ext", [".npy", ".npz", ".mat", ".h5"])
def test_existing_outputs_are_refused_without_overwrite(tmp_path, ext):
    out = tmp_path / f"keep{ext}"
    out.write_bytes(b"precious")
    result = run("explain", "--model", TINY, "--data", TINY_DATA, "--out", str(out))
    assert result.returncode == 1
    assert f"{out} exists; remove it or pass --overwrite" in result.stderr
    assert out.read_bytes() == b"precious"
    result = run("explain", "--model", TINY, "--data", TINY_DATA, "--out", str(out), "--overwrite")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() != b"precious"


def test_convert_refuses_an_existing_model(tmp_path):
    out = tmp_path / "tiny.nn"
    out.write_bytes(b"precious")
    result = run("convert", TINY, str(out))
    assert result.returncode == 1 and "exists; remove it or pass --overwrite" in result.stderr
    assert out.read_bytes() == b"precious"
    assert run("convert", TINY, str(out), "--overwrite").returncode == 0
    assert len(lrpnb.load(out).layers) == 5


def test_png_heatmaps_never_overwrite_inputs_and_keep_every_name(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    digit_png(images / "three.png", 1)
    Image.open(images / "three.png").convert("RGB").save(images / "three.jpg")
    before = (images / "three.png").read_bytes()
    for extra in ([], ["--overwrite"]):
        result = run("explain", "--model", TINY, "--data", str(images), "--out", str(tmp_path / "r.h5"),
                     "--png", str(images), *extra)
        assert result.returncode == 1
        assert "is the folder of the input images; write the heatmaps into another folder" in result.stderr
        assert (images / "three.png").read_bytes() == before
    assert not (tmp_path / "r.h5").exists() and not (tmp_path / "r.h5.partial").exists()
    heat = tmp_path / "heat"
    heat.mkdir()
    result = run("explain", "--model", TINY, "--data", str(images), "--out", str(tmp_path / "r.h5"),
                 "--png", str(heat))
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(heat)) == ["three_jpg.png", "three_png.png"]
    # a list reading images from two folders: neither takes heatmaps, whatever --overwrite says
    other = tmp_path / "other"
    other.mkdir()
    digit_png(other / "one.png", 2)
    (tmp_path / "images.lst").write_text("other/one.png\nimages/three.png\n")
    for folder in (images, other):
        result = run("explain", "--model", TINY, "--data", str(tmp_path / "images.lst"), "--out",
                     str(tmp_path / "l.h5"), "--png", str(folder), "--overwrite")
        assert result.returncode == 1 and "is the folder of the input images" in result.stderr
    # a second run finds them: refused, unless --overwrite
    result = run("explain", "--model", TINY, "--data", str(images), "--out", str(tmp_path / "s.h5"),
                 "--png", str(heat))
    assert result.returncode == 1 and "three_jpg.png and 1 more exist" in result.stderr


# ---------------------------------------------------------------- validated first
@pytest.mark.parametrize("make, args, message", [
    (lambda p: np.save(p, np.zeros((3, 5, 5, 1))), [], "samples of shape 5 x 5 x 1 do not fit the model"),
    (lambda p: np.save(p, np.full((3, 8, 8, 1), np.nan)), [], "contains NaN"),
    (lambda p: np.save(p, np.zeros((3, 8, 8, 1))), ["--png", ".", "--cmap", "nocolours"], "nocolours"),
])
def test_a_failed_validation_leaves_nothing_that_blocks_the_corrected_run(tmp_path, make, args, message):
    data = tmp_path / "data.npy"
    make(data)
    out = tmp_path / "r.h5"
    args = [str(tmp_path) if a == "." else a for a in args]
    result = run("explain", "--model", TINY, "--data", str(data), "--out", str(out), *args)
    assert result.returncode == 1 and message in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["data.npy"]
    result = run("explain", "--model", TINY, "--data", TINY_DATA, "--out", str(out))
    assert result.returncode == 0, result.stderr


def test_a_partial_file_with_nothing_done_blocks_nothing(tmp_path):
    out = tmp_path / "r.h5"
    with h5py.File(str(out) + ".partial", "w") as handle:
        handle.attrs["settings"] = "{}"
        handle.attrs["done"] = 0
        handle.attrs["count"] = 99
    result = run("explain", "--model", TINY, "--data", TINY_DATA, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert not os.path.exists(str(out) + ".partial")
    with h5py.File(out, "r") as handle:
        assert handle["relevance"].shape == (16, 8, 8, 1)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_folder_is_named(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        result = run("explain", "--model", TINY, "--data", TINY_DATA, "--out", str(folder / "r.h5"))
    finally:
        folder.chmod(0o700)
    assert result.returncode == 1 and f"folder {folder} is not writable" in result.stderr


# ---------------------------------------------------------------- options
def test_zb_bounds_and_parameters_that_make_no_sense(tmp_path):
    out = tmp_path / "r.npy"
    result = run("explain", "--model", TINY, "--data", TINY_DATA, "--out", str(out), "--rule", "zb",
                 "--param=-1,1")
    assert result.returncode == 0, result.stderr
    net = lrpnb.load(TINY)
    np.testing.assert_allclose(np.load(out), net.explain(np.load(TINY_DATA), rule="zb", param=(-1, 1)),
                               rtol=1e-12)
    for rule, param, message in (("alphabeta", "0.5", "alpha must be >= 1"),
                                 ("alphabeta", "-1", "alpha must be >= 1"),
                                 ("flat", "3", "the 'flat' rule takes no parameter, got 3.0"),
                                 ("epsilon", "x", "--param must be a number, or LOW,HIGH for the zb rule")):
        result = run("explain", "--model", TINY, "--data", TINY_DATA, "--out", str(tmp_path / "s.npy"),
                     "--rule", rule, "--param", param)
        assert result.returncode == 1 and message in result.stderr, result.stderr
    with pytest.raises(ValueError, match="alpha must be >= 1"):
        net.explain(np.load(TINY_DATA), rule="alphabeta", param=0.5)
    with pytest.raises(ValueError, match="the 'gradient' method takes no parameter"):
        net.explain(np.load(TINY_DATA), rule="gradient", param=1.0)


@pytest.mark.parametrize("values", [["0", "0"], ["1", "-1"]])
def test_an_empty_input_range_is_refused(tmp_path, values):
    result = run("explain", "--model", TINY, "--data", TINY_DATA, "--out", str(tmp_path / "r.npy"),
                 "--input-range", *values)
    assert result.returncode == 1 and "--input-range needs LOW < HIGH" in result.stderr


# ---------------------------------------------------------------- data conventions
def test_uint8_data_is_scaled_like_images(tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, size=(4, 8, 8, 1), dtype=np.uint8)
    np.save(tmp_path / "pixels.npy", pixels)
    result = run("explain", "--model", TINY, "--data", str(tmp_path / "pixels.npy"),
                 "--out", str(tmp_path / "r.npy"), "--input-range", "0", "1")
    assert result.returncode == 0, result.stderr
    assert "uint8 values are scaled from 0..255 to 0..1 (--input-range)" in result.stderr
    expected = lrpnb.load(TINY).explain(pixels.astype(np.float32) / 255)
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), expected, rtol=1e-5, atol=1e-7)


def test_mnist_rows_into_lenet_as_the_demo_does(tmp_path):
    from lrpnb.digits import mnist_images

    rows = np.random.default_rng(4).integers(0, 256, size=(3, 784), dtype=np.uint8)
    np.save(tmp_path / "rows.npy", rows)
    result = run("explain", "--model", "lenet5_synthetic", "--data", str(tmp_path / "rows.npy"),
                 "--out", str(tmp_path / "r.npy"))
    assert result.returncode == 0, result.stderr
    assert "rows of 784 values become 28 x 28 images padded to 32 x 32 x 1" in result.stderr
    expected = lrpnb.load("lenet5_synthetic").explain(mnist_images(rows))
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), expected, rtol=1e-5, atol=1e-6)


def test_the_embedded_model_has_a_name():
    result = run("info", "lenet5_synthetic")
    assert result.returncode == 0, result.stderr
    assert "input: images of 32 x 32 x 1" in result.stdout
    assert len(lrpnb.load("lenet5_synthetic.txt").layers) == len(lrpnb.load("lenet5_synthetic").layers)


# ---------------------------------------------------------------- demo and pipes
def test_demo_errors_come_before_the_work(tmp_path):
    labels = tmp_path / "labels.npy"
    np.save(labels, np.arange(2))
    data = tmp_path / "rows.npy"
    np.save(data, np.zeros((5, 784), dtype=np.uint8))
    result = run("demo", "--data", str(data), "--labels", str(labels), "--count", "5", "--out", str(tmp_path))
    assert result.returncode == 1 and "has 2 labels for 5 samples" in result.stderr
    assert "Traceback" not in result.stderr
    result = run("demo", "--out", str(tmp_path / "missing" / "demo.png"))
    assert result.returncode == 1 and "does not exist" in result.stderr and "explained" not in result.stdout


def test_a_closed_pipe_is_no_error():
    exe = [sys.executable, "-m", "lrpnb"]
    reader = subprocess.Popen(exe + ["info", "lenet5_synthetic"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    reader.stdout.close()  # as `| head -0` would
    _, error = reader.communicate(timeout=120)
    assert b"Broken pipe" not in error and b"Traceback" not in error


def test_an_image_too_large_to_decode_is_reported_and_left_out(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    from lrpnb.batch import open_source

    digit_png(tmp_path / "a.png")
    PILImage.new("L", (64, 64)).save(tmp_path / "b.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)  # b.png: 4,096 pixels, over twice the limit
    X, problems, kept = open_source(str(tmp_path), None, (8, 8, 1)).batch(0, 2)
    assert kept == [0] and X.shape == (1, 8, 8, 1)
    assert problems[0][0] == 1 and "b.png: refusing to decode the image" in problems[0][1]


def test_hdf5_compression_is_asked_for(tmp_path):
    for extra, expected in (([], None), (["--compress"], "gzip")):
        out = tmp_path / f"r{len(extra)}.h5"
        result = run("explain", "--model", TINY, "--data", TINY_DATA, "--out", str(out), *extra)
        assert result.returncode == 0, result.stderr
        with h5py.File(out, "r") as handle:
            assert handle["relevance"].compression == expected
            np.testing.assert_allclose(handle["relevance"][...], lrpnb.load(TINY).explain(np.load(TINY_DATA)),
                                       rtol=1e-12)
    result = run("explain", "--model", TINY, "--data", TINY_DATA, "--out", str(tmp_path / "r.npy"), "--compress")
    assert result.returncode == 1 and "--compress applies to HDF5 output" in result.stderr

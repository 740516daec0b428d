"""The lrpnb command's batch features, run as the real console script:
HDF5 output and resuming, image folders and lists, PNGs, info, convert,
the toolbox's batch mode and the demo."""
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from PIL import Image

import lrpnb
import lrpnb.batch
from conftest import EXAMPLES, MODELS, ROOT, need_shared, toolbox_digits
from lrpnb.toolbox_mode import read_rawhm
from test_cli import run

TINY = EXAMPLES / "tiny_cnn.txt"
TINY_DATA = EXAMPLES / "tiny_cnn_inputs.npy"


def read_h5(path):
    with h5py.File(path, "r") as handle:
        return {name: handle[name][...] for name in handle}


@pytest.mark.parametrize("target", ["pred", "2", "all", "top:2", "label"])
def test_explain_hdf5_equals_explain(tmp_path, target):
    X = np.load(TINY_DATA)
    net = lrpnb.load(TINY)
    labels = np.arange(16) % 3
    if target == "label":
        np.save(tmp_path / "labels.npy", labels)
        spec = f"label:{tmp_path / 'labels.npy'}"
    else:
        spec = target
    result = run("explain", "--model", str(TINY), "--data", str(TINY_DATA), "--out",
                 str(tmp_path / "r.h5"), "--rule", "epsilon", "--param", "0.1", "--target", spec,
                 "--batch-size", "5")
    assert result.returncode == 0, result.stderr
    out = read_h5(tmp_path / "r.h5")
    assert sorted(out) == ["prediction", "relevance", "scores", "target"]
    scores = net.forward(X)
    expected_target = {"pred": None, "2": 2, "all": "all", "top:2": ("topk", 2), "label": labels}[target]
    expected = net.explain(X, target=expected_target, rule="epsilon", param=0.1)
    np.testing.assert_allclose(out["relevance"], expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out["scores"], scores, rtol=1e-12)
    assert np.array_equal(out["prediction"], np.argmax(scores, axis=1))
    chosen = {"pred": np.argmax(scores, axis=1), "2": np.full(16, 2), "all": np.tile(np.arange(3), (16, 1)),
              "top:2": np.argsort(-scores, axis=1, kind="stable")[:, :2], "label": labels}[target]
    assert np.array_equal(out["target"], chosen)
    assert not (tmp_path / "r.h5.partial").exists()


def test_existing_output_needs_overwrite(tmp_path):
    args = ("explain", "--model", str(TINY), "--data", str(TINY_DATA), "--out", str(tmp_path / "r.h5"))
    assert run(*args).returncode == 0
    again = run(*args)
    assert again.returncode == 1 and "exists; remove it or pass --overwrite" in again.stderr
    assert run(*args, "--overwrite").returncode == 0


def test_interrupted_hdf5_run_resumes_to_the_same_result(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10000, 8, 8, 1))
    np.save(tmp_path / "x.npy", X)
    args = ["explain", "--model", str(TINY), "--data", str(tmp_path / "x.npy"), "--rule", "epsilon",
            "--param", "0.01", "--batch-size", "1"]
    whole = run(*args, "--out", str(tmp_path / "whole.h5"))
    assert whole.returncode == 0, whole.stderr
    out, partial = tmp_path / "resumed.h5", tmp_path / "resumed.h5.partial"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    # a shell that runs the tests in the background starts them with SIGINT
    # ignored, and Python keeps it ignored: give the child the default back
    process = subprocess.Popen([sys.executable, "-m", "lrpnb", *args, "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not partial.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip(f"the run finished before it could be interrupted ({stderr[-300:]!r})")
    assert process.returncode == 130, stderr
    assert "run the same command again to resume" in stderr
    assert partial.exists() and not out.exists()
    with h5py.File(partial, "r") as handle:
        done = int(handle["_done"][0])
    assert 0 < done < 10000
    resumed = run(*args, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out}: {done} of 10000" in resumed.stderr
    a, b = read_h5(tmp_path / "whole.h5"), read_h5(out)
    assert sorted(a) == sorted(b)
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    other = run(*args[:-4], "--rule", "flat", "--batch-size", "1", "--out", str(tmp_path / "x.h5"))
    assert other.returncode == 0, other.stderr


def test_partial_file_of_other_settings_is_refused(tmp_path):
    partial = tmp_path / "r.h5.partial"
    with h5py.File(partial, "w") as handle:
        handle.attrs["settings"] = "{}"
        handle.attrs["done"] = 3
        handle.attrs["count"] = 16
    result = run("explain", "--model", str(TINY), "--data", str(TINY_DATA), "--out", str(tmp_path / "r.h5"))
    assert result.returncode == 1 and "other settings" in result.stderr
    assert partial.exists()


def write_digit_images(folder, count):
    """PNGs of digits (grey 0..255) and the array the model sees for them."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(count, 8, 8), dtype=np.uint8)
    for k in range(count):
        Image.fromarray(pixels[k]).save(folder / f"img{k}.png")
    return (pixels / np.float32(255) * 2 - 1).astype(np.float32)[..., None]


def test_image_folder_with_a_broken_image(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    X = write_digit_images(images, 4)
    (images / "img9_broken.png").write_bytes(b"not a png")
    (tmp_path / "png").mkdir()
    result = run("explain", "--model", str(TINY), "--data", str(images), "--out", str(tmp_path / "r.h5"),
                 "--rule", "epsilon", "--param", "0.1", "--png", str(tmp_path / "png"))
    assert result.returncode == 1
    assert "img9_broken.png: cannot read the image" in result.stderr
    assert "1 of 5 samples could not be read" in result.stderr
    out = read_h5(tmp_path / "r.h5")
    assert [s.decode() for s in out["source"]] == [f"img{k}.png" for k in range(4)]
    expected = lrpnb.load(TINY).explain(X, rule="epsilon", param=0.1)
    np.testing.assert_allclose(out["relevance"], expected, rtol=1e-5, atol=1e-6)
    pngs = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert pngs == [f"img{k}.png" for k in range(4)]
    with Image.open(tmp_path / "png" / "img0.png") as png:
        # the input and its map enlarged to 128 px (8 x 16), captions above, a colour bar beside
        assert png.size[1] == 18 + 128 and png.size[0] > 2 * 128


def test_image_list_resized(tmp_path):
    write_digit_images(tmp_path, 2)
    Image.open(tmp_path / "img0.png").resize((16, 16)).save(tmp_path / "big.png")
    (tmp_path / "images.lst").write_text("# images\nimg0.png 1\nbig.png 2\nabsent.png 0\n")
    result = run("explain", "--model", str(TINY), "--data", str(tmp_path / "images.lst"),
                 "--out", str(tmp_path / "r.npy"))
    assert result.returncode == 1
    assert "absent.png: image not found (line 4)" in result.stderr
    assert np.load(tmp_path / "r.npy").shape == (2, 8, 8, 1)
    # the rows' images beside the relevance, which holds no names itself
    assert (tmp_path / "r.npy.names.txt").read_text() == "img0.png\nbig.png\n"


def test_hdf5_input(tmp_path):
    with h5py.File(tmp_path / "in.h5", "w") as handle:
        handle["images"] = np.load(TINY_DATA)
        handle["labels"] = np.zeros(16)
    result = run("explain", "--model", str(TINY), "--data", f"{tmp_path / 'in.h5'}:images",
                 "--out", str(tmp_path / "r.npy"))
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), lrpnb.load(TINY).explain(np.load(TINY_DATA)),
                               rtol=1e-12, atol=1e-15)
    unnamed = run("explain", "--model", str(TINY), "--data", str(tmp_path / "in.h5"),
                  "--out", str(tmp_path / "s.npy"))
    assert unnamed.returncode == 1 and "name the dataset" in unnamed.stderr


@pytest.mark.parametrize("args, message", [
    (["--target", "top:0"], "top:K needs an integer K >= 1"),
    (["--target", "label:absent.npy"], "data file not found"),
    (["--composite", "Mystery"], "unknown composite 'Mystery'"),
    (["--composite", "EpsilonPlus", "--rule", "epsilon"], "not both"),
    (["--out", "r.csv"], "write .h5/.hdf5"),
    (["--png", "no_such_folder"], "--png folder does not exist"),
    (["--data", "no_such_folder/x.npy"], "data not found"),
])
def test_explain_bad_options(tmp_path, args, message):
    os.chdir(tmp_path)
    base = ["explain", "--model", str(TINY), "--data", str(TINY_DATA), "--out", "r.h5"]
    for flag, value in zip(args[::2], args[1::2]):
        if flag in base:
            base[base.index(flag) + 1] = value
        else:
            base += [flag, value]
    result = run(*base)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert not os.path.exists("r.h5") and not os.path.exists("r.h5.partial")


def test_composite_option(tmp_path):
    result = run("explain", "--model", str(TINY), "--data", str(TINY_DATA), "--out", str(tmp_path / "r.npy"),
                 "--composite", "EpsilonPlus")
    assert result.returncode == 0, result.stderr
    expected = lrpnb.load(TINY).explain(np.load(TINY_DATA), composite=lrpnb.EpsilonPlus())
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), expected, rtol=1e-12, atol=1e-15)


def test_info_and_convert(tmp_path):
    info = run("info", str(TINY))
    assert info.returncode == 0
    assert "input: images of 8 x 8 x 1" in info.stdout and "total parameters: 151" in info.stdout
    assert "Linear 36 3" in info.stdout
    assert run("convert", str(TINY), str(tmp_path / "m.nn")).returncode == 0
    assert run("convert", str(tmp_path / "m.nn"), str(tmp_path / "m.txt")).returncode == 0
    a, b = lrpnb.load(TINY), lrpnb.load(tmp_path / "m.txt")
    for x, y in zip(a.layers, b.layers):
        assert x.describe() == y.describe()
        if hasattr(x, "W"):
            assert np.array_equal(x.W, y.W) and np.array_equal(x.B, y.B)
    bad = run("convert", str(TINY), str(tmp_path / "m.mat"))
    assert bad.returncode == 1 and "writing .mat models is not supported" in bad.stderr
    assert run("info", str(tmp_path / "absent.txt")).returncode == 1


def test_every_subcommand_has_help():
    for command in ("demo", "explain", "info", "convert", "toolbox"):
        result = run(command, "--help")
        assert result.returncode == 0 and "usage: lrpnb " + command in result.stdout


def toolbox_setup(tmp_path, model, size, extra=""):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    write_digit_images(root / "sub", 2)
    (tmp_path / "config.txt").write_text(
        f"model_file\n{model}\n\nrelpropformulatype\n2\nepsstab\n0.1\nstandalone_outpath\nout\n"
        f"standalone_rootpath\n{root}\ninput_size\n{size} {size}\n{extra}")
    (tmp_path / "files.txt").write_text("sub/img0.png -1\nsub/img1.png -2\nsub/absent.png 1\n")
    return root


def test_toolbox_mode(tmp_path):
    root = toolbox_setup(tmp_path, TINY, 8)
    result = run("toolbox", "-c", str(tmp_path / "config.txt"), "-f", str(tmp_path / "files.txt"),
                 "-p", str(root))
    assert result.returncode == 1, result.stderr
    assert "files.txt:3" in result.stderr and "absent.png: image not found" in result.stderr
    out = tmp_path / "out" / "sub"
    names = sorted(p.name for p in out.iterdir())
    assert "img0_rawhm.txt" in names and "img0_heatmap.png" in names
    assert "img0_as_inputted_into_the_dnn.png" in names and "img0_toptenscores.txt" in names
    assert sum(n.startswith("img1_class") and n.endswith("_rawhm.txt") for n in names) == 3  # 3 classes
    net = lrpnb.load(TINY)
    X = lrpnb.batch.load_image(root / "sub" / "img0.png", (8, 8), 1, (-1, 1))[None]
    composite = lrpnb.formula_type(2, epsstab=0.1)
    expected = net.explain(X, composite=composite)[0]
    np.testing.assert_allclose(read_rawhm(out / "img0_rawhm.txt"), expected, rtol=1e-8, atol=1e-12)
    lines = (out / "img0_toptenscores.txt").read_text().splitlines()
    scores = net.forward(X)[0]
    assert [int(line.split()[0]) for line in lines] == list(np.argsort(-scores))
    assert float(lines[0].split()[1]) == pytest.approx(scores.max(), rel=1e-8)


def test_toolbox_config_errors(tmp_path):
    root = toolbox_setup(tmp_path, TINY, 8, extra="mean_file\nmean.txt\n")
    result = run("toolbox", "-c", str(tmp_path / "config.txt"), "-f", str(tmp_path / "files.txt"),
                 "-p", str(root))
    assert result.returncode == 1
    assert "config.txt:14: unknown key 'mean_file'" in result.stderr
    assert not (tmp_path / "out").exists()
    toolbox_setup(tmp_path / "b", TINY, 8)
    text = (tmp_path / "b" / "config.txt").read_text().replace("relpropformulatype\n2", "relpropformulatype\n77")
    (tmp_path / "b" / "config.txt").write_text(text)
    result = run("toolbox", "-c", str(tmp_path / "b" / "config.txt"), "-f", str(tmp_path / "b" / "files.txt"))
    assert result.returncode == 1 and "unknown formula type 77" in result.stderr


def test_rawhm_round_trip(tmp_path):
    from lrpnb.toolbox_mode import write_rawhm

    relevance = np.random.default_rng(3).normal(size=(4, 5, 3))
    write_rawhm(relevance, tmp_path / "r_rawhm.txt")
    lines = (tmp_path / "r_rawhm.txt").read_text().splitlines()
    assert lines[0] == "3" and lines[1] == "4 5" and len(lines) == 2 + 3 * 4
    np.testing.assert_allclose(read_rawhm(tmp_path / "r_rawhm.txt"), relevance, rtol=1e-8)


def test_demo_runs_on_the_embedded_model(tmp_path):
    result = run("demo", "--out", str(tmp_path), "--count", "6")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("predicted") == 6 and "lrpnb_demo.png" in result.stdout
    assert "samples/s" in result.stdout
    with Image.open(tmp_path / "lrpnb_demo.png") as png:
        assert png.size[0] > 200


def test_demo_with_the_toolbox_model_and_mnist(tmp_path):
    model = need_shared(MODELS / "LeNet-5.nn")
    data = need_shared(MODELS.parent / "data" / "test_images.mat")
    labels = need_shared(MODELS.parent / "data" / "test_labels.npy")
    result = run("demo", "--model", str(model), "--data", str(data), "--labels", str(labels),
                 "--count", "4", "--out", str(tmp_path / "mnist.png"))
    assert result.returncode == 0, result.stderr
    assert "100.0% right" in result.stdout
    assert (tmp_path / "mnist.png").exists()
    toolbox_digits(1)  # the same scaling as the parity tests


def test_nan_sample_is_named_with_its_index(tmp_path):
    X = np.load(TINY_DATA)
    X[7, 3, 3, 0] = np.nan
    np.save(tmp_path / "x.npy", X)
    result = run("explain", "--model", str(TINY), "--data", str(tmp_path / "x.npy"), "--out",
                 str(tmp_path / "r.npy"), "--batch-size", "5")
    assert result.returncode == 1
    assert "samples 5..9: X contains NaN or infinite values (first in sample 2)" in result.stderr
    assert not (tmp_path / "r.npy").exists()


def test_explain_toolbox_lenet5_on_mnist_digits(tmp_path):
    model = need_shared(MODELS / "LeNet-5.nn")
    X = toolbox_digits(40)
    np.save(tmp_path / "digits.npy", X)
    result = run("explain", "--model", str(model), "--data", str(tmp_path / "digits.npy"), "--out",
                 str(tmp_path / "r.h5"), "--rule", "alphabeta", "--param", "2", "--batch-size", "16")
    assert result.returncode == 0, result.stderr
    out = read_h5(tmp_path / "r.h5")
    net = lrpnb.load(model)
    np.testing.assert_allclose(out["relevance"], net.explain(X, rule="alphabeta", param=2.0),
                               rtol=1e-10, atol=1e-14)
    labels = lrpnb.read_data(need_shared(MODELS.parent / "data" / "test_labels.npy")).reshape(-1)[:40]
    assert np.mean(out["prediction"] == labels) >= 0.95


def test_png_of_vectors_and_missing_gpu_are_clear_errors(tmp_path):
    (tmp_path / "png").mkdir()
    vectors = run("explain", "--model", str(EXAMPLES / "mlp.txt"), "--data", str(EXAMPLES / "mlp_inputs.txt"),
                  "--out", str(tmp_path / "r.h5"), "--png", str(tmp_path / "png"))
    assert vectors.returncode == 1 and "--png draws images" in vectors.stderr
    assert not (tmp_path / "r.h5.partial").exists()
    from lrpnb.cuda import unavailable_reason

    if unavailable_reason() is None:
        pytest.skip("a GPU is usable here")
    gpu = run("explain", "--model", str(TINY), "--data", str(TINY_DATA), "--out", str(tmp_path / "g.npy"),
              "--device", "cuda")
    assert gpu.returncode == 1 and "lrpnb explain: error:" in gpu.stderr and "CUDA" in gpu.stderr


def _toolbox(tmp_path, lines, prefix=None):
    (tmp_path / "files.txt").write_text("".join(f"{line}\n" for line in lines))
    return run("toolbox", "-c", str(tmp_path / "config.txt"), "-f", str(tmp_path / "files.txt"),
               "-p", str(prefix if prefix is not None else tmp_path / "images"))


def test_toolbox_entries_stay_below_the_prefix_and_are_regular_files(tmp_path):
    root = toolbox_setup(tmp_path, TINY, 8)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write_digit_images(outside, 1)
    lines = [f"{outside / 'img0.png'} -1", "../elsewhere/img0.png -1", "sub/../../elsewhere/img0.png -1",
             "sub/img0.png -1"]
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "sub" / "pipe.png")
        lines.append("sub/pipe.png -1")
    result = _toolbox(tmp_path, lines)
    assert result.returncode == 1
    for k in (1, 2, 3):
        assert f"files.txt:{k}: " in result.stderr and "is not below the path prefix" in result.stderr
    if hasattr(os, "mkfifo"):
        assert "pipe.png: not a regular file" in result.stderr  # refused at once, not a hang
    assert (tmp_path / "out" / "sub" / "img0_rawhm.txt").exists()
    assert not any("elsewhere" in str(p) for p in (tmp_path / "out").rglob("*"))


def test_toolbox_outputs_stay_real_folders_below_the_outpath_with_distinct_names(tmp_path):
    root = toolbox_setup(tmp_path, TINY, 8)
    Image.open(root / "sub" / "img0.png").save(root / "sub" / "img0.jpg")
    result = _toolbox(tmp_path, ["sub/img0.png -1", "sub/img0.jpg -1"])
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "out" / "sub").iterdir() if p.name.endswith("_rawhm.txt"))
    assert names == ["img0_jpg_rawhm.txt", "img0_rawhm.txt"]
    # a symbolic link below the output folder is not followed
    (root / "linked").mkdir()
    write_digit_images(root / "linked", 1)
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "out" / "linked").symlink_to(target, target_is_directory=True)
    result = _toolbox(tmp_path, ["linked/img0.png -1"])
    assert result.returncode == 1 and "a symbolic link below standalone_outpath" in result.stderr
    assert not any(target.iterdir())


@pytest.mark.parametrize("outpath", ["/tmp/lrpnb-anywhere", "../out"])
def test_toolbox_outpath_stays_below_the_config_folder(tmp_path, outpath):
    toolbox_setup(tmp_path, TINY, 8)
    text = (tmp_path / "config.txt").read_text().replace("standalone_outpath\nout\n", f"standalone_outpath\n{outpath}\n")
    (tmp_path / "config.txt").write_text(text)
    result = _toolbox(tmp_path, ["sub/img0.png -1"])
    assert result.returncode == 1
    assert "standalone_outpath must be a folder below the config file's folder" in result.stderr
    assert not os.path.exists("/tmp/lrpnb-anywhere")

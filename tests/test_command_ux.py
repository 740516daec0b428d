"""Issue 25's command-line details: outputs that are inputs, demo --labels
without --data, a command's own usage for unknown options, help and table
text."""
import numpy as np
import pytest
from PIL import Image

from lrpnb.cli import build_parser, main


def digits_folder(folder, count=3):
    """A folder of ``count`` 32 x 32 grey PNGs, as the embedded LeNet-5 takes them."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(count):
        Image.fromarray(rng.integers(0, 256, size=(32, 32), dtype=np.uint8), mode="L").save(folder / f"d{k}.png")
    return folder


def untouched(path):
    return path.read_bytes()


# ---------------------------------------------------------------- item 1: demo --out
def test_demo_refuses_an_existing_file_unless_overwrite(tmp_path, capsys):
    other = tmp_path / "other.png"
    other.write_bytes(b"precious")
    assert main(["demo", "--count", "1", "--out", str(other)]) == 1
    assert f"{other} exists; remove it or pass --overwrite" in capsys.readouterr().err
    assert other.read_bytes() == b"precious"
    assert main(["demo", "--count", "1", "--out", str(other), "--overwrite"]) == 0
    assert other.read_bytes() != b"precious"
    # its own picture is replaced without --overwrite, as before
    own = tmp_path / "lrpnb_demo.png"
    own.write_bytes(b"old")
    assert main(["demo", "--count", "1", "--out", str(tmp_path)]) == 0
    assert own.read_bytes() != b"old"
    assert "explained 1 sample in" in capsys.readouterr().out


def test_demo_never_writes_a_file_it_reads(tmp_path, capsys):
    folder = digits_folder(tmp_path / "digits")
    image = folder / "d1.png"
    before = image.read_bytes()
    assert main(["demo", "--data", str(folder), "--out", str(image), "--overwrite"]) == 1
    assert "is an input of this command" in capsys.readouterr().err
    assert image.read_bytes() == before
    # an earlier lrpnb_demo.png among the images read is an input too
    own = folder / "lrpnb_demo.png"
    own.write_bytes(image.read_bytes())
    assert main(["demo", "--data", str(folder), "--out", str(folder)]) == 1
    assert "is an input of this command" in capsys.readouterr().err
    labels = tmp_path / "labels.png"
    labels.write_bytes(b"not labels")
    data = tmp_path / "rows.npy"
    np.save(data, np.zeros((2, 784), dtype=np.uint8))
    assert main(["demo", "--data", str(data), "--labels", str(labels), "--out", str(labels),
                 "--overwrite"]) == 1
    assert "is an input of this command" in capsys.readouterr().err
    assert labels.read_bytes() == b"not labels"


# ---------------------------------------------------------------- item 2: evaluate outputs
def test_evaluate_never_writes_an_input_image_or_labels(tmp_path, capsys):
    folder = digits_folder(tmp_path / "digits")
    image = folder / "d0.png"
    before = image.read_bytes()
    common = ["evaluate", "--model", "lenet5_synthetic", "--data", str(folder), "--rule", "flat",
              "--steps", "2", "--overwrite"]
    assert main(common + ["--plot", str(image)]) == 1
    assert "is an input of this command" in capsys.readouterr().err
    assert image.read_bytes() == before
    labels = tmp_path / "labels.h5"
    labels.write_bytes(b"labels")
    assert main(common + ["--target", f"label:{labels}", "--out", str(labels)]) == 1
    assert "is an input of this command" in capsys.readouterr().err
    assert labels.read_bytes() == b"labels"


# ---------------------------------------------------------------- item 3: demo --labels
def test_demo_labels_need_data(tmp_path, capsys):
    labels = tmp_path / "labels.npy"
    np.save(labels, np.arange(8))
    assert main(["demo", "--labels", str(labels), "--out", str(tmp_path)]) == 1
    assert "--labels are the labels of --data; give --data too" in capsys.readouterr().err
    assert not (tmp_path / "lrpnb_demo.png").exists()


# ---------------------------------------------------------------- item 4: a command's usage
@pytest.mark.parametrize("argv, usage", [
    (["explain", "--model", "m", "--data", "d", "--out", "o", "--bogus"], "usage: lrpnb explain"),
    (["evaluate", "--bogus"], "usage: lrpnb evaluate"),
    (["info", "m", "--bogus"], "usage: lrpnb info"),
    (["--bogus", "info", "m"], "usage: lrpnb [-h]"),
])
def test_unknown_options_show_the_command_usage(argv, usage, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(usage) and "unrecognized arguments: --bogus" in error


# ---------------------------------------------------------------- item 6: text
def test_help_has_single_percent_signs():
    parser = build_parser()
    for name, command in parser.commands.items():
        assert "%%" not in command.format_help(), name
    assert "95% interval" in parser.commands["evaluate"].format_help()


def test_colour_bar_labels_fit_at_small_scales():
    from lrpnb.render import _scale_label

    assert _scale_label(0.000123) == "+1.2e-4" and _scale_label(-1.5e-12) == "-2e-12"
    assert _scale_label(0.00123) == "+0.0012" and _scale_label(1.0) == "+1" and _scale_label(1234) == "+1234"
    for value in (1e-300, 3e-7, 0.5, 42.0, 99999.0, 1e12):
        assert len(_scale_label(value)) <= 7


# ---------------------------------------------------------------- item 8: a partial shared folder
def test_need_shared_says_what_is_missing(tmp_path, monkeypatch):
    import conftest

    monkeypatch.setattr(conftest, "SHARED", tmp_path / "absent")
    with pytest.raises(pytest.skip.Exception, match="shared folder beside the repository"):
        conftest.need_shared(tmp_path / "absent" / "x.npy")
    (tmp_path / "partial").mkdir()
    monkeypatch.setattr(conftest, "SHARED", tmp_path / "partial")
    with pytest.raises(pytest.skip.Exception, match="does not hold .a partial copy."):
        conftest.need_shared(tmp_path / "partial" / "x.npy")
    assert conftest.need_shared(tmp_path) == tmp_path


# ---------------------------------------------------------------- item 5: evaluate --mean/--std
def test_evaluate_normalises_as_explain_does(tmp_path, capsys):
    import json

    import h5py

    from conftest import EXAMPLES
    from lrpnb import evaluate_dataset
    from lrpnb.inputs import normalise

    model, data = str(EXAMPLES / "tiny_cnn.txt"), str(EXAMPLES / "tiny_cnn_inputs.npy")
    settings = dict(rule=["epsilon:0.01", "flat"], region=(2, 2), steps=4, replace=0.0, seed=3, verbose=False)
    given = evaluate_dataset(model, data, mean=0.25, std=2.0, out=str(tmp_path / "c.h5"), **settings)
    np.save(tmp_path / "normalised.npy", normalise(np.load(data), [0.25], [2.0]))
    expected = evaluate_dataset(model, str(tmp_path / "normalised.npy"), **settings)
    for label, curve in expected.curves.items():
        np.testing.assert_allclose(given.curves[label], curve, rtol=1e-12, atol=1e-12)
    with h5py.File(tmp_path / "c.h5", "r") as handle:
        recorded = json.loads(handle.attrs["settings"])
    assert recorded["mean"] == [0.25] and recorded["std"] == [2.0] and recorded["channel_order"] == "rgb"
    assert main(["evaluate", "--model", model, "--data", data, "--std", "0"]) == 1
    assert "--std must be positive" in capsys.readouterr().err
    helped = build_parser().commands["evaluate"].format_help()
    assert "--channel-order" in helped and "act on the normalised input" in " ".join(helped.split())


def test_demo_refuses_a_count_beyond_the_memory_limit(tmp_path, capsys):
    assert main(["demo", "--count", "1000000", "--out", str(tmp_path / "d.png")]) == 1
    error = capsys.readouterr().err
    assert "--count: 1,000,000 samples would take" in error and "LRPNB_MAX_ARRAY_BYTES" in error
    assert not (tmp_path / "d.png").exists()


# ---------------------------------------------------------------- Ctrl-C at any moment
def test_the_command_line_starts_without_numpy_or_numba():
    """What runs before main() can catch a Ctrl-C is the standard library only."""
    import subprocess
    import sys

    code = "import sys, lrpnb.cli; print(sorted(m for m in ('numpy', 'numba', 'h5py') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["numpy", "numba"])
def test_ctrl_c_while_the_command_line_loads_exits_130_with_one_line(module):
    """The signal itself arrives while ``module`` is imported (the moment a
    Ctrl-C most often lands in a short run)."""
    import subprocess
    import sys

    code = f"""
import builtins, os, signal, sys
import lrpnb.cli
real = builtins.__import__
def importing(name, *args, **kwargs):
    if name == {module!r} and not getattr(importing, "sent", False):
        importing.sent = True
        os.kill(os.getpid(), signal.SIGINT)
    return real(name, *args, **kwargs)
builtins.__import__ = importing
sys.exit(lrpnb.cli.main(["info", "lenet5_synthetic"]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines() in (["lrpnb: interrupted"], ["lrpnb info: interrupted"])


def test_ctrl_c_after_the_command_is_known_names_it(monkeypatch, capsys):
    from lrpnb.cli import info

    def interrupted(args):
        raise KeyboardInterrupt

    parser = build_parser()
    monkeypatch.setattr("lrpnb.cli.build_parser", lambda: parser)
    parser.commands["info"].set_defaults(run=interrupted)
    assert main(["info", "lenet5_synthetic"]) == 130
    assert capsys.readouterr().err.splitlines() == ["lrpnb info: interrupted"]
    assert info  # the command's module was loaded by the parser

"""Issue 27, "nothing lost, nothing mixed, nothing stuck": every output of
``explain_dataset`` is written under its lock, no file the run reads is ever
one it writes, a folder is no output, a finished file is complete before it
appears, stale locks and temporaries go, a resumed run never mixes data."""
import os
import pathlib

import h5py
import numpy as np
import pytest
from PIL import Image

import lrpnb
from lrpnb import writers
from lrpnb.digits import synthetic_digits
from lrpnb.pipeline import explain as pipeline_explain
from conftest import interrupting

MODEL = "lenet5_synthetic"


@pytest.fixture
def digits(tmp_path):
    path = tmp_path / "digits.npy"
    np.save(path, synthetic_digits(12, seed=3).images)
    return path


@pytest.mark.parametrize("ext", [".npy", ".npz", ".mat"])
def test_a_second_run_to_the_same_relevance_file_is_refused_naming_the_lock(tmp_path, digits, ext):
    out = tmp_path / f"r{ext}"
    data = digits
    held = writers.WriterLock(out)  # another run writing it
    try:
        with pytest.raises(ValueError, match=rf"another lrpnb run \(pid {os.getpid()}\).*{out.name}\.lock"):
            lrpnb.explain_dataset(MODEL, data, out, verbose=False)
    finally:
        held.release()
    assert not out.exists()
    lrpnb.explain_dataset(MODEL, data, out, verbose=False)
    assert out.exists() and not (tmp_path / f"r{ext}.lock").exists()


def test_the_lock_is_held_while_a_npy_file_is_written(tmp_path, digits, monkeypatch):
    out, seen = tmp_path / "r.npy", []
    write = writers.NpyWriter.write

    def spy(self, relevance):
        with pytest.raises(ValueError, match="r.npy.lock"):
            writers.WriterLock(out)
        seen.append(1)
        return write(self, relevance)

    monkeypatch.setattr(writers.NpyWriter, "write", spy)
    lrpnb.explain_dataset(MODEL, digits, out, batch_size=8, verbose=False)
    assert seen == [1, 1] and not (tmp_path / "r.npy.lock").exists()


def test_the_label_file_is_never_the_output(tmp_path, digits):
    labels = tmp_path / "labels.npy"
    np.save(labels, np.arange(12) % 10)
    before = labels.read_bytes()
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="labels.npy is an input of this command"):
            lrpnb.explain_dataset(MODEL, digits, labels, target=f"label:{labels}", overwrite=overwrite,
                                  verbose=False)
    assert labels.read_bytes() == before
    # nor the lock or the partial file of an output
    lock_labels = tmp_path / "r.h5.partial"
    np.save(tmp_path / "x.npy", np.arange(12) % 10)
    os.replace(tmp_path / "x.npy", lock_labels)
    with pytest.raises(ValueError, match="r.h5.partial is an input"):
        lrpnb.explain_dataset(MODEL, digits, tmp_path / "r.h5", target=f"label:{lock_labels}", overwrite=True,
                              verbose=False)


def _images(folder, count=3):
    folder.mkdir()
    pixels = synthetic_digits(count, seed=1).images
    for k in range(count):
        Image.fromarray(np.uint8(np.clip((pixels[k, :, :, 0] + 1) * 127.5, 0, 255)), mode="L").save(
            folder / f"img{k}.png")
    return folder


def test_a_model_named_like_the_list_of_image_names_is_never_overwritten(tmp_path):
    images = _images(tmp_path / "images")
    out = tmp_path / "r.npy"
    model = tmp_path / "r.npy.names.txt"
    lrpnb.model_io.save(lrpnb.load(MODEL), model, fmt="txt")
    before = model.read_bytes()
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="r.npy.names.txt is an input of this command"):
            lrpnb.explain_dataset(str(model), images, out, overwrite=overwrite, verbose=False)
    assert model.read_bytes() == before and not out.exists()


def test_an_image_of_a_list_is_never_an_output(tmp_path):
    images = _images(tmp_path / "images")
    listed = tmp_path / "list.lst"
    listed.write_text("images/img0.png\nimages/img1.png\nr.npy.names.txt\n")
    (tmp_path / "r.npy.names.txt").write_bytes((images / "img2.png").read_bytes())
    with pytest.raises(ValueError, match="r.npy.names.txt is an input"):
        lrpnb.explain_dataset(MODEL, listed, tmp_path / "r.npy", overwrite=True, verbose=False)


@pytest.mark.parametrize("name", ["r.npy", "r.h5"])
def test_an_existing_folder_as_the_output_is_refused_before_any_work(tmp_path, digits, name):
    (tmp_path / name).mkdir()
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=f"{name} is a folder"):
            lrpnb.explain_dataset(MODEL, digits, tmp_path / name, overwrite=overwrite, verbose=False)
    assert sorted(os.listdir(tmp_path)) == sorted(["digits.npy", name])


def test_a_finished_hdf5_file_is_complete_before_its_rename(tmp_path, digits, monkeypatch):
    replace, seen = os.replace, []

    def spy(source, target):
        if str(target).endswith("r.h5"):
            with h5py.File(source, "r") as handle:
                seen.append((sorted(handle), dict(handle.attrs)))
        return replace(source, target)

    monkeypatch.setattr(writers.os, "replace", spy)
    lrpnb.explain_dataset(MODEL, digits, tmp_path / "r.h5", batch_size=5, verbose=False)
    assert [names for names, _ in seen] == [["prediction", "relevance", "scores", "target"]]
    # the run's bookkeeping is gone; what remains says how the file was made
    from lrpnb import provenance

    attributes = seen[0][1]
    assert set(attributes) <= set(provenance.FIELDS) and attributes["command"] == "explain"


def test_a_stale_lock_is_taken_over_and_removed(tmp_path, digits):
    for name in ("r.npy", "r.h5"):
        (tmp_path / f"{name}.lock").write_text("999999")  # its holder is gone
        lrpnb.explain_dataset(MODEL, digits, tmp_path / name, verbose=False)
        assert not (tmp_path / f"{name}.lock").exists()
        # a kill after the final rename left one: a refused rerun removes it too
        (tmp_path / f"{name}.lock").write_text("999999")
        with pytest.raises(ValueError, match="exists"):
            lrpnb.explain_dataset(MODEL, digits, tmp_path / name, verbose=False)
        assert not (tmp_path / f"{name}.lock").exists()


def test_an_input_named_like_the_lock_is_never_removed(tmp_path, digits):
    lock = tmp_path / "r.npy.lock"
    lock.write_bytes(digits.read_bytes())
    with pytest.raises(ValueError, match="r.npy.lock is an input"):
        lrpnb.explain_dataset(MODEL, lock, tmp_path / "r.npy", overwrite=True, verbose=False)
    assert lock.read_bytes() == digits.read_bytes()


def test_temporaries_a_killed_run_left_are_removed(tmp_path, digits):
    left = [".r.npy.abc_1234.tmp.npy", ".r.npy.abc_1234.tmp.npy.cut.npy"]
    other = [".s.npy.abc_1234.tmp.npy", ".r.npy.nine_char.tmp.npy"]
    for name in left + other:
        (tmp_path / name).write_bytes(b"x")
    lrpnb.explain_dataset(MODEL, digits, tmp_path / "r.npy", verbose=False)
    assert not any((tmp_path / name).exists() for name in left)
    assert all((tmp_path / name).exists() for name in other)
    assert not any(name.startswith(".r.npy.") for name in os.listdir(tmp_path) if name not in other)


def test_resuming_over_changed_data_is_refused(tmp_path, digits, capsys):
    net = lrpnb.load(MODEL)
    net.explain = interrupting(net.explain, 2)  # Ctrl-C while the second batch is explained
    out = tmp_path / "r.h5"
    with pytest.raises(KeyboardInterrupt):
        lrpnb.explain_dataset(net, digits, out, batch_size=4)
    assert (tmp_path / "r.h5.partial").exists()
    np.save(digits, synthetic_digits(12, seed=4).images)  # other data, same name and shape
    with pytest.raises(ValueError, match="the data changed .*data_fingerprint.*--overwrite"):
        lrpnb.explain_dataset(MODEL, digits, out, batch_size=4)
    summary = lrpnb.explain_dataset(MODEL, digits, out, batch_size=4, overwrite=True, verbose=False)
    assert summary.explained == 12


def test_the_summary_counts_one_sample_in_the_singular(tmp_path, digits):
    one = tmp_path / "one.npy"
    np.save(one, np.load(digits)[:1])
    summary = lrpnb.explain_dataset(MODEL, one, tmp_path / "r.npy", verbose=False)
    assert summary.line().startswith("explained 1 sample with ")
    assert pipeline_explain.ExplainSummary("o", 2, 2, 0, 1.0, "m").line().startswith("explained 2 samples ")


def test_without_a_rule_each_layer_keeps_its_preset(tmp_path, digits):
    net = lrpnb.load(MODEL)
    net.set_lrp_parameters("alphabeta", 2.0)  # as the toolbox's pickled models carry theirs
    lrpnb.explain_dataset(net, digits, tmp_path / "presets.npy", verbose=False)
    lrpnb.explain_dataset(MODEL, digits, tmp_path / "given.npy", rule="alphabeta", param=2.0, verbose=False)
    lrpnb.explain_dataset(MODEL, digits, tmp_path / "simple.npy", verbose=False)
    presets = np.load(tmp_path / "presets.npy")
    np.testing.assert_array_equal(presets, np.load(tmp_path / "given.npy"))
    assert not np.allclose(presets, np.load(tmp_path / "simple.npy"))


def test_resuming_with_a_changed_model_or_labels_is_refused(tmp_path, digits, monkeypatch):
    model, labels = tmp_path / "m.txt", tmp_path / "labels.npy"
    model.write_bytes(pathlib.Path(lrpnb.model_io.model_path(MODEL)).read_bytes())
    np.save(labels, np.arange(12) % 10)
    explain = lrpnb.Network.explain
    out = tmp_path / "r.h5"
    for changed in (labels, model):
        # Ctrl-C while the second batch is explained
        monkeypatch.setattr(lrpnb.Network, "explain", interrupting(explain, 2))
        with pytest.raises(KeyboardInterrupt):
            lrpnb.explain_dataset(str(model), digits, out, batch_size=4, target=f"label:{labels}",
                                  overwrite=True, verbose=False)
        monkeypatch.setattr(lrpnb.Network, "explain", explain)
        assert (tmp_path / "r.h5.partial").exists()
        os.utime(changed, ns=(1, 1))  # rewritten under the same name (its time tells)
        with pytest.raises(ValueError, match="inputs_fingerprint"):
            lrpnb.explain_dataset(str(model), digits, out, batch_size=4, target=f"label:{labels}",
                                  verbose=False)


@pytest.mark.parametrize("ext", [".h5", ".npy", ".npz"])
def test_a_setup_failure_after_the_lock_is_taken_releases_it(tmp_path, digits, monkeypatch, ext):
    out = tmp_path / f"r{ext}"

    def broken(path):
        raise OSError("cannot list the folder")

    monkeypatch.setattr(pipeline_explain, "remove_leftovers", broken)
    with pytest.raises(OSError, match="cannot list the folder"):
        lrpnb.explain_dataset(MODEL, digits, out, verbose=False)
    assert not (tmp_path / f"r{ext}.lock").exists()
    monkeypatch.undo()
    lrpnb.explain_dataset(MODEL, digits, out, verbose=False)
    assert out.exists()


def test_a_failure_before_the_first_batch_releases_the_hdf5_lock(tmp_path, digits, monkeypatch):
    out = tmp_path / "r.h5"

    def broken(total, description):
        raise RuntimeError("no terminal")

    monkeypatch.setattr(pipeline_explain, "_progress", broken)
    with pytest.raises(RuntimeError, match="no terminal"):
        lrpnb.explain_dataset(MODEL, digits, out, verbose=False)
    assert not (tmp_path / "r.h5.lock").exists() and not out.exists()


def test_a_discarded_partial_file_goes_before_the_lock(tmp_path, monkeypatch):
    """The partial file of a run that explained nothing is removed while its
    lock is held: once the lock is free it may be another run's."""
    out = tmp_path / "r.h5"
    writer = writers.HDF5Writer(out, 4, {"a": 1})
    writer.write(0, {"relevance": np.ones((4, 2), np.float32)})
    order = []
    release = writers.WriterLock.release
    monkeypatch.setattr(writers.WriterLock, "release",
                        lambda self: (order.append(("lock", os.path.exists(writer.partial))), release(self)))
    writer.discard()
    assert order == [("lock", False)]
    assert not os.path.exists(writer.partial) and not (tmp_path / "r.h5.lock").exists()


def test_results_are_synced_to_the_disk_before_they_are_renamed(tmp_path, digits, monkeypatch):
    from lrpnb import _atomic

    synced, replaced = [], []
    sync_file, replace = _atomic.sync_file, os.replace
    monkeypatch.setattr(_atomic, "sync_file", lambda path: (synced.append(os.fspath(path)), sync_file(path)))
    monkeypatch.setattr(_atomic.os, "replace", lambda a, b: (replaced.append((os.fspath(a), synced[-1])),
                                                             replace(a, b)))
    for ext in (".h5", ".npy", ".npz"):
        lrpnb.explain_dataset(MODEL, digits, tmp_path / f"r{ext}", verbose=False)
    assert replaced and all(source == last_synced for source, last_synced in replaced)


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo"])
def test_a_planted_lock_file_never_writes_through_to_another_file(tmp_path, digits, kind):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    lock = tmp_path / "r.npy.lock"
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "hardlink":
        os.link(victim, lock)
    else:
        os.mkfifo(lock)
    with pytest.raises(ValueError, match="r.npy.lock: the lock file is"):
        lrpnb.explain_dataset(MODEL, digits, tmp_path / "r.npy", verbose=False)
    assert victim.read_text() == "precious" and not (tmp_path / "r.npy").exists()

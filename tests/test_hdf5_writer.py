"""The resumable HDF5 writer: a kill at any point leaves a readable partial
file with exactly its finished batches, a full disk is a clear error, a
second writer is refused, a finished run killed before its rename finishes."""
import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from conftest import EXAMPLES, ROOT
from lrpnb.batch import HDF5Writer
from test_cli import run

SETTINGS = {"model": "m", "data": "d"}


def batch(start, stop):
    rows = np.arange(start, stop)
    return {"ok": np.ones(stop - start, bool), "relevance": np.repeat(rows[:, None], 6, axis=1).astype(np.float32),
            "target": rows % 3}


def test_a_finished_run_killed_before_its_rename_is_finished_by_the_next(tmp_path):
    path = tmp_path / "r.h5"
    writer = HDF5Writer(path, 10, SETTINGS)
    for start in range(0, 10, 4):
        writer.write(start, batch(start, min(start + 4, 10)))
    writer.close()  # killed here: every batch done, no rename
    again = HDF5Writer(path, 10, SETTINGS)
    assert again.done == 10
    assert again.finish() == 0
    with h5py.File(path, "r") as handle:
        assert sorted(handle) == ["relevance", "target"] and not dict(handle.attrs)
        np.testing.assert_array_equal(handle["relevance"][:, 0], np.arange(10))
    assert not os.path.exists(str(path) + ".partial") and not os.path.exists(str(path) + ".lock")


def test_a_hard_kill_leaves_the_finished_batches_readable(tmp_path):
    path = tmp_path / "r.h5"
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from test_hdf5_writer import batch, SETTINGS
        from lrpnb.batch import HDF5Writer
        writer = HDF5Writer({str(path)!r}, 12, SETTINGS)
        writer.write(0, batch(0, 4))
        writer.write(4, batch(4, 8))
        writer.file["relevance"][8:12] = -1  # rows of a batch being written when the kill came
        os.kill(os.getpid(), 9)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == -signal.SIGKILL, result.stderr
    with h5py.File(str(path) + ".partial", "r") as handle:
        assert int(handle["_done"][0]) == 8
        np.testing.assert_array_equal(handle["relevance"][:8, 0], np.arange(8))
    writer = HDF5Writer(path, 12, SETTINGS)  # the killed writer's lock went with it
    assert writer.done == 8
    writer.write(8, batch(8, 12))
    writer.finish()
    with h5py.File(path, "r") as handle:
        np.testing.assert_array_equal(handle["relevance"][:, 5], np.arange(12))


def test_a_second_writer_of_the_same_file_is_refused(tmp_path):
    first = HDF5Writer(tmp_path / "r.h5", 4, SETTINGS)
    with pytest.raises(ValueError, match=rf"r.h5: another lrpnb run \(pid {os.getpid()}\) is writing it"):
        HDF5Writer(tmp_path / "r.h5", 4, SETTINGS)
    first.write(0, batch(0, 4))
    first.finish()
    HDF5Writer(tmp_path / "s.h5", 4, SETTINGS).close()  # other files are free


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="needs posix_fallocate and resource limits")
def test_a_full_disk_is_a_clear_error_before_any_batch(tmp_path):
    import resource

    def small_disk():  # files of at most 200 kB, as on a nearly full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    data = tmp_path / "x.npy"
    np.save(data, np.zeros((4000, 8, 8, 1), np.float32))  # 1 MB of maps to write
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "lrpnb", "explain", "--model", str(EXAMPLES / "tiny_cnn.txt"), "--data",
               str(data), "--out", str(tmp_path / "r.h5")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, preexec_fn=small_disk)
    assert result.returncode == 1, result.stderr
    # "file too large" where the filesystem reserves space (posix_fallocate), HDF5's words elsewhere
    assert "cannot write" in result.stderr and "nothing was written" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["x.npy"]
    assert run(*command[3:]).returncode == 0  # with room, the same command runs


def test_a_run_killed_while_making_its_partial_file_blocks_nothing(tmp_path):
    # the partial file appears only whole: a kill while it is made leaves
    # the temporary file, which the next run replaces
    path = tmp_path / "r.h5"
    (tmp_path / "r.h5.partial.new").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(88))  # 96 bytes, cut short
    writer = HDF5Writer(path, 4, SETTINGS)
    assert writer.done == 0
    writer.write(0, batch(0, 4))
    writer.finish()
    assert sorted(os.listdir(tmp_path)) == ["r.h5"]


def test_finishing_by_a_copy_goes_a_slice_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(HDF5Writer, "COPY_BYTES", 50)  # two rows of 24 bytes per slice
    writer = HDF5Writer(tmp_path / "r.h5", 9, SETTINGS, compress=True, names=[f"img{k}.png" for k in range(9)])
    for start in range(0, 9, 4):
        rows = batch(start, min(start + 4, 9))
        rows["ok"] = rows["target"] != 1  # samples 1, 4, 7 could not be read
        writer.write(start, rows)
    assert writer.finish() == 3
    with h5py.File(tmp_path / "r.h5", "r") as handle:
        kept = [0, 2, 3, 5, 6, 8]
        np.testing.assert_array_equal(handle["relevance"][:, 0], kept)
        assert handle["relevance"].compression == "gzip"
        assert [name.decode() for name in handle["source"][...]] == [f"img{k}.png" for k in kept]
        assert sorted(handle) == ["relevance", "source", "target"]

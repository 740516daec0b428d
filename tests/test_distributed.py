"""``explain_dataset`` on a Dask cluster (lrpnb.distributed): the local run's
results bit for bit, whatever worker dies, resumable, and one-line errors."""
import os
import re
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")
h5py = pytest.importorskip("h5py")

import lrpnb  # noqa: E402
from lrpnb.cli import main  # noqa: E402
from lrpnb.digits import synthetic_digits  # noqa: E402
from lrpnb.distributed import run as distributed_run  # noqa: E402

MODEL = "lenet5_synthetic"
METHOD = dict(rule="epsilon", param=0.01)
BATCH = 64
COUNT = 2000
RESULTS = ("relevance", "prediction", "scores", "target")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "digits.npy"
    np.save(path, synthetic_digits(COUNT, seed=11).images)
    return path


@pytest.fixture(scope="module")
def local(digits, tmp_path_factory):
    """The local run's HDF5 result, read back: name -> array, and its attributes."""
    out = tmp_path_factory.mktemp("local") / "local.h5"
    lrpnb.explain_dataset(MODEL, digits, out, batch_size=BATCH, verbose=False, **METHOD)
    with h5py.File(out, "r") as handle:
        return {name: handle[name][...] for name in handle}, dict(handle.attrs)


def _same_as_local(local, path):
    """Every dataset of ``path`` (.h5 or .zarr) equal bit for bit to the local run's."""
    arrays, attributes = local
    if str(path).endswith(".zarr"):
        group = zarr.open_group(str(path), mode="r")
        read = {name: group[name][...] for name in group.array_keys()}
        keys = set(group.attrs)
    else:
        with h5py.File(path, "r") as handle:
            read = {name: handle[name][...] for name in handle}
            keys = set(handle.attrs)
    assert sorted(read) == sorted(RESULTS)
    for name in RESULTS:
        assert read[name].dtype == arrays[name].dtype, name
        assert read[name].tobytes() == arrays[name].tobytes(), name
    assert keys == set(attributes)


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_a_cluster_run_is_the_local_run_bit_for_bit(tmp_path, digits, local, client, suffix):
    out = tmp_path / f"cluster{suffix}"
    summary = lrpnb.explain_dataset(MODEL, digits, out, batch_size=BATCH, client=client, verbose=False, **METHOD)
    assert (summary.count, summary.explained, summary.failures) == (COUNT, COUNT, 0)
    _same_as_local(local, out)
    assert sorted(os.listdir(tmp_path)) == [out.name]  # no partial, lock or marker left


def test_a_cluster_run_writes_the_npy_of_the_local_run(tmp_path, digits, local, client):
    out = tmp_path / "cluster.npy"
    lrpnb.explain_dataset(MODEL, digits, out, batch_size=BATCH, client=client, verbose=False, **METHOD)
    assert np.load(out).tobytes() == local[0]["relevance"].tobytes()
    assert sorted(os.listdir(tmp_path)) == ["cluster.npy", "cluster.npy.provenance.json"]


# the patch each worker runs: the first chunk past the middle kills its worker
# process (once: the marker file says it happened)
DYING = """
import os
import lrpnb.distributed.tasks as tasks
original = getattr(tasks, "_original_explain_chunk", tasks.explain_chunk)
tasks._original_explain_chunk = original
def dying(spec, first, last):
    if first >= LIMIT:
        try:
            fd = os.open(MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return original(spec, first, last)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os._exit(1)
    return original(spec, first, last)
dying.__module__, dying.__qualname__ = original.__module__, original.__qualname__
tasks.explain_chunk = dying
"""

RESTORE = """
import lrpnb.distributed.tasks as tasks
tasks.explain_chunk = getattr(tasks, "_original_explain_chunk", tasks.explain_chunk)
"""


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_a_worker_killed_mid_run_changes_nothing(tmp_path, digits, local, client, suffix):
    marker = tmp_path / "died"
    client.run(exec, DYING.replace("LIMIT", str(COUNT // 2)).replace("MARKER", repr(str(marker))), {})
    try:
        out = tmp_path / f"cluster{suffix}"
        summary = lrpnb.explain_dataset(MODEL, digits, out, batch_size=BATCH, client=client, verbose=False,
                                        **METHOD)
    finally:
        client.run(exec, RESTORE, {})
    assert marker.exists()  # a worker did die
    assert summary.explained == COUNT
    _same_as_local(local, out)


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_an_interrupted_cluster_run_resumes_without_redoing_chunks(tmp_path, digits, local, client, suffix,
                                                                    monkeypatch, capsys):
    counted = distributed_run.DistributedRun._counted
    seen = []

    def stopping(self, first, last, bar):
        counted(self, first, last, bar)
        seen.append((first, last))
        if len(seen) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(distributed_run.DistributedRun, "_counted", stopping)
    out = tmp_path / f"cluster{suffix}"
    with pytest.raises(KeyboardInterrupt):
        lrpnb.explain_dataset(MODEL, digits, out, batch_size=BATCH, client=client, verbose=False, **METHOD)
    taken = sum(last - first for first, last in seen)
    assert not out.exists() and (tmp_path / f"cluster{suffix}.partial").exists()
    said = capsys.readouterr().err
    assert re.search(rf"interrupted after \d+ of {COUNT} samples; they are kept in .*partial", said), said
    time.sleep(1)  # chunks a worker was writing when the client stopped are durable or abandoned by now
    monkeypatch.setattr(distributed_run.DistributedRun, "_counted", counted)
    summary = lrpnb.explain_dataset(MODEL, digits, out, batch_size=BATCH, client=client, verbose=False, **METHOD)
    kept = int(re.search(rf"resuming {re.escape(str(out))}: (\d+) of {COUNT} samples were done",
                         capsys.readouterr().err).group(1))
    # an HDF5 file keeps what the client wrote; zarr chunks also the ones
    # workers finished after the client took its last result
    assert kept == taken if suffix == ".h5" else kept >= taken
    assert summary.explained == COUNT - kept  # the chunks done were not redone
    _same_as_local(local, out)
    assert sorted(os.listdir(tmp_path)) == [out.name]


def test_ctrl_c_in_the_command_is_one_line_and_130(tmp_path, digits, cluster, monkeypatch, capsys):
    def interrupting(self, first, last, bar):
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed_run.DistributedRun, "_counted", interrupting)
    out = tmp_path / "r.zarr"
    status = main(["explain", "--model", MODEL, "--data", str(digits), "--out", str(out), "--batch-size",
                   str(BATCH), "--scheduler", cluster.scheduler_address])
    err = capsys.readouterr().err
    assert status == 130
    lines = [line for line in err.splitlines() if line.startswith("lrpnb") and "dashboard" not in line]
    assert len(lines) == 1 and "interrupted after" in lines[0], err
    assert "Traceback" not in err


def test_an_unreachable_scheduler_is_one_line_naming_it_and_leaves_nothing(tmp_path, digits, capsys):
    out = tmp_path / "r.h5"
    began = time.monotonic()
    status = main(["explain", "--model", MODEL, "--data", str(digits), "--out", str(out),
                   "--scheduler", "tcp://127.0.0.1:1"])
    assert time.monotonic() - began < 45
    err = capsys.readouterr().err
    assert status == 1
    assert err.count("\n") == 1 and "tcp://127.0.0.1:1" in err and "Traceback" not in err, err
    assert os.listdir(tmp_path) == []


def test_a_worker_that_cannot_read_the_data_is_named(tmp_path, client, monkeypatch):
    data = tmp_path / "digits.npy"
    np.save(data, synthetic_digits(200, seed=3).images)
    made = distributed_run.DistributedRun.__init__

    def vanishing(self, *args, **kwargs):
        made(self, *args, **kwargs)
        os.remove(data)  # checked on the client; gone for the workers (a path not shared)

    monkeypatch.setattr(distributed_run.DistributedRun, "__init__", vanishing)
    out = tmp_path / "r.h5"
    with pytest.raises(ValueError) as error:
        lrpnb.explain_dataset(MODEL, data, out, batch_size=BATCH, client=client, verbose=False)
    message = str(error.value)
    assert "worker tcp://" in message and str(data) in message and "\n" not in message
    assert not out.exists()


def test_the_command_starts_its_own_workers(tmp_path, digits, local, capsys, monkeypatch):
    # the environment Dask's nannies write into this process is put back afterwards
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    out = tmp_path / "cli.zarr"
    assert main(["explain", "--model", MODEL, "--data", str(digits), "--out", str(out), "--batch-size",
                 str(BATCH), "--rule", "epsilon", "--param", "0.01", "--workers", "2"]) == 0
    _same_as_local(local, out)
    assert "explained 2000 samples" in capsys.readouterr().out
    assert os.environ["OMP_NUM_THREADS"] == "7" and "MALLOC_TRIM_THRESHOLD_" not in os.environ


def test_zarr_needs_a_cluster_and_the_cluster_options_exclude_each_other(tmp_path, digits, client):
    with pytest.raises(ValueError, match=r"\.zarr results are written by a Dask run"):
        lrpnb.explain_dataset(MODEL, digits, tmp_path / "r.zarr", batch_size=BATCH, verbose=False)
    with pytest.raises(ValueError, match="not scheduler and client"):
        lrpnb.explain_dataset(MODEL, digits, tmp_path / "r.h5", scheduler="tcp://127.0.0.1:1", client=client)
    with pytest.raises(ValueError, match="--workers must be >= 1"):
        lrpnb.explain_dataset(MODEL, digits, tmp_path / "r.h5", workers=0)
    assert os.listdir(tmp_path) == []


def test_chunks_are_whole_batches_that_shrink_towards_the_end():
    plan = distributed_run.plan_chunks
    chunks = plan([(0, 2000)], 64, 2)  # 32 batches: 4, 3, 3, 2, ... 1 batch
    assert chunks[0] == (0, 256) and chunks[-1] == (1984, 2000)
    assert all(first == last_ for (_, last_), (first, _) in zip(chunks, chunks[1:]))
    sizes = [last - first for first, last in chunks[:-1]]
    assert sizes == sorted(sizes, reverse=True) and set(sizes) == {256, 192, 128, 64}
    assert all(first % 64 == 0 for first, _ in chunks)
    assert {last - first for first, last in plan([(0, 10 ** 6)], 64, 2)[:100]} == {8 * 64}  # at most 8 batches
    assert plan([(0, 100)], 64, 2) == [(0, 64), (64, 100)]
    # what a resumed run has left, and chunks of a size given
    assert plan([(128, 320), (640, 700)], 64, 1, batches=2) == [(128, 256), (256, 320), (640, 700)]


def test_ctrl_c_of_a_terminal_reaches_the_local_workers_too_and_stays_one_line(tmp_path):
    import signal
    import subprocess
    import sys

    data = tmp_path / "many.npy"
    np.save(data, synthetic_digits(20000, seed=2).images)
    out = tmp_path / "r.h5"
    # a terminal's Ctrl-C is SIGINT to every process of its group: the
    # command's and its worker processes'
    command = subprocess.Popen([sys.executable, "-m", "lrpnb", "explain", "--model", MODEL, "--data", str(data),
                                "--out", str(out), "--batch-size", str(BATCH), "--workers", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        said = command.stderr.readline()  # the dashboard's address: the workers are up
        time.sleep(2)
        os.killpg(command.pid, signal.SIGINT)
        _, err = command.communicate(timeout=60)
    finally:
        command.kill()
    assert command.returncode == 130, said + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = [line for line in (said + err).splitlines() if line and "dashboard" not in line]
    assert len(lines) == 1 and lines[0].startswith("lrpnb explain: interrupted"), err


def test_a_worker_that_cannot_read_the_model_is_named(tmp_path, digits, client, monkeypatch):
    import shutil

    from lrpnb.pipeline.options import embedded_model

    model = tmp_path / "lenet.txt"
    shutil.copy(embedded_model(), model)
    made = distributed_run.DistributedRun.__init__

    def vanishing(self, *args, **kwargs):
        made(self, *args, **kwargs)
        os.remove(model)  # read on the client; gone for the workers

    monkeypatch.setattr(distributed_run.DistributedRun, "__init__", vanishing)
    with pytest.raises(ValueError) as error:
        lrpnb.explain_dataset(model, digits, tmp_path / "r.zarr", batch_size=BATCH, client=client, verbose=False)
    message = str(error.value)
    assert "worker tcp://" in message and str(model) in message and "\n" not in message
    assert os.listdir(tmp_path) == []  # the arrays made before any chunk, removed


@pytest.mark.parametrize("suffix", [".h5", ".zarr", ".npy"])
def test_images_with_an_unreadable_one_are_the_local_run_bit_for_bit(tmp_path, client, suffix):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    pixels = synthetic_digits(40, seed=4).images[..., 0]
    for k, image in enumerate(pixels):
        Image.fromarray(np.round((image + 1) * 127.5).astype(np.uint8)).save(images / f"d{k:02d}.png")
    (images / "d17.png").write_bytes(b"not a png")  # left out of both results, rows dropped
    local, cluster = tmp_path / f"local{suffix}", tmp_path / f"cluster{suffix}"
    lrpnb.explain_dataset(MODEL, images, local if suffix != ".zarr" else tmp_path / "local.h5", batch_size=8,
                          verbose=False, **METHOD)
    summary = lrpnb.explain_dataset(MODEL, images, cluster, batch_size=8, client=client, verbose=False, **METHOD)
    assert (summary.explained, summary.failures) == (39, 1)
    if suffix == ".npy":
        assert np.load(cluster).tobytes() == np.load(local).tobytes()
        assert (tmp_path / "cluster.npy.names.txt").read_text() == (tmp_path / "local.npy.names.txt").read_text()
        return
    with h5py.File(tmp_path / "local.h5", "r") as handle:
        expected = {name: handle[name][...] for name in handle}
    if suffix == ".zarr":
        group = zarr.open_group(str(cluster), mode="r")
        read = {name: group[name][...] for name in group.array_keys()}
    else:
        with h5py.File(cluster, "r") as handle:
            read = {name: handle[name][...] for name in handle}
    assert sorted(read) == sorted(expected) == sorted(RESULTS + ("source",))
    for name in RESULTS:
        assert read[name].tobytes() == expected[name].tobytes(), name
    names = [name.decode() if isinstance(name, bytes) else str(name) for name in read["source"]]
    assert names == [os.path.basename(str(name.decode() if isinstance(name, bytes) else name))
                     for name in expected["source"]] and "d17.png" not in names


def test_a_loaded_network_is_sent_to_the_workers(tmp_path, digits, local, client):
    out = tmp_path / "network.h5"
    lrpnb.explain_dataset(lrpnb.load(MODEL), digits, out, batch_size=BATCH, client=client, verbose=False,
                          **METHOD)
    with h5py.File(out, "r") as handle:
        for name in RESULTS:
            assert handle[name][...].tobytes() == local[0][name].tobytes(), name


def test_a_local_run_finishes_what_a_cluster_run_left(tmp_path, digits, local, client, monkeypatch):
    def stopping(self, first, last, bar):
        if first >= 2 * 256:
            raise KeyboardInterrupt

    monkeypatch.setattr(distributed_run.DistributedRun, "_counted", stopping)
    out = tmp_path / "mixed.h5"
    with pytest.raises(KeyboardInterrupt):
        lrpnb.explain_dataset(MODEL, digits, out, batch_size=BATCH, client=client, verbose=False, **METHOD)
    summary = lrpnb.explain_dataset(MODEL, digits, out, batch_size=BATCH, verbose=False, **METHOD)
    assert 0 < summary.explained < COUNT
    _same_as_local(local, out)


def test_options_a_cluster_run_cannot_honour_are_refused_before_any_work(tmp_path, digits, client):
    (tmp_path / "pngs").mkdir()
    with pytest.raises(ValueError, match=r"--png is written by the local run only"):
        lrpnb.explain_dataset(MODEL, digits, tmp_path / "r.h5", png=tmp_path / "pngs", client=client)
    with pytest.raises(ValueError, match=r"r\.zarr: the arrays of a \.zarr result are always compressed"):
        lrpnb.explain_dataset(MODEL, digits, tmp_path / "r.zarr", compress=True, client=client)
    assert os.listdir(tmp_path) == ["pngs"] and os.listdir(tmp_path / "pngs") == []


def test_a_task_of_an_earlier_run_leaves_the_folder_of_a_later_run_alone(tmp_path):
    # Dask cancels a running task only when it ends: a chunk of an interrupted
    # run may still be written after a later run took the folder over
    from lrpnb.distributed import zarr_store

    path = str(tmp_path / "r.zarr")
    shapes = dict(relevance=((3,), np.dtype(np.float32)), ok=((), np.dtype(bool)))
    ones, sevens = (dict(relevance=np.full((4, 3), value, np.float32), ok=np.ones(4, bool)) for value in (1, 7))
    earlier = zarr_store.ZarrWriter(path, 8, 4, {"rule": "a"})
    earlier.create(shapes)
    earlier.claim()
    assert zarr_store.write_chunk(earlier.spec(), 0, 4, ones)
    resumed = zarr_store.ZarrWriter(path, 8, 4, {"rule": "a"})
    assert resumed.done == {0: 4}
    resumed.claim()
    assert not zarr_store.write_chunk(earlier.spec(), 4, 8, sevens)  # the earlier run's task, too late
    assert resumed.marked() == {0: 4}
    assert zarr.open_group(resumed.partial)["relevance"][...].tolist() == [[1.0] * 3] * 4 + [[0.0] * 3] * 4
    afresh = zarr_store.ZarrWriter(path, 8, 4, {"rule": "b"}, overwrite=True)
    afresh.create(shapes)
    afresh.claim()
    assert not zarr_store.write_chunk(resumed.spec(), 0, 4, sevens)
    assert afresh.marked() == {} and not zarr.open_group(afresh.partial)["relevance"][...].any()
    for first in (0, 4):
        assert zarr_store.write_chunk(afresh.spec(), first, first + 4, ones)
    assert afresh.finish({"command": "explain"}) == 0
    assert not zarr_store.write_chunk(afresh.spec(), 0, 4, sevens)  # nothing made again once finished
    assert sorted(os.listdir(tmp_path)) == ["r.zarr"] and sorted(os.listdir(path)) == ["relevance", "zarr.json"]
    assert (zarr.open_group(path)["relevance"][...] == 1).all()


def test_relative_paths_are_made_absolute_for_the_workers(tmp_path, digits, local, client, monkeypatch):
    import shutil

    from lrpnb.pipeline.options import embedded_model

    shutil.copy(embedded_model(), tmp_path / "lenet.txt")
    shutil.copy(digits, tmp_path / "d.npy")
    monkeypatch.chdir(tmp_path)  # the client's folder; the workers work in the one they started in
    assert os.getcwd() not in client.run(os.getcwd).values()
    lrpnb.explain_dataset("lenet.txt", "d.npy", "r.h5", batch_size=BATCH, client=client, verbose=False, **METHOD)
    _same_as_local(local, tmp_path / "r.h5")
    # each worker keeps its arrays on the heap (Dask's own malloc settings halved a worker's speed)
    assert all(client.run(lambda dask_worker: "lrpnb-heap-allocation" in dask_worker.plugins).values())


def test_workers_read_the_data_from_a_url(tmp_path, digits, local, client):
    out = tmp_path / "url.h5"
    url = "file://" + str(digits)
    lrpnb.explain_dataset(MODEL, url, out, batch_size=BATCH, client=client, verbose=False, **METHOD)
    _same_as_local(local, out)
    with h5py.File(out, "r") as handle:
        assert handle.attrs["data"] == url


def test_memory_urls_of_npy_and_hdf5_data_on_workers_in_this_process(tmp_path, digits, local):
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.pipe("/lrpnb-test/d.npy", digits.read_bytes())
    with h5py.File(tmp_path / "d.h5", "w") as handle:
        handle["images"] = np.load(digits)
        handle["labels"] = np.zeros(COUNT)
    memory.pipe("/lrpnb-test/d.h5", (tmp_path / "d.h5").read_bytes())
    from lrpnb.pipeline.options import embedded_model

    memory.pipe("/lrpnb-test/lenet.txt", open(embedded_model(), "rb").read())
    model = "memory://lrpnb-test/lenet.txt"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") \
            as cluster, distributed.Client(cluster) as threads:
        for url in ("memory://lrpnb-test/d.npy", "memory://lrpnb-test/d.h5:images"):
            out = tmp_path / "memory.zarr"
            lrpnb.explain_dataset(model, url, out, batch_size=BATCH, client=threads, verbose=False, overwrite=True,
                                  **METHOD)
            _same_as_local(local, out)
            assert zarr.open_group(str(out)).attrs["model"] == model
    memory.rm("/lrpnb-test", recursive=True)


def test_a_url_the_workers_cannot_read_is_named_with_the_worker(tmp_path, digits, client, monkeypatch):
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.pipe("/lrpnb-only-here/d.npy", digits.read_bytes())  # this process's memory, not the workers'
    try:
        with pytest.raises(ValueError) as error:
            lrpnb.explain_dataset(MODEL, "memory://lrpnb-only-here/d.npy", tmp_path / "r.h5", batch_size=BATCH,
                                  client=client, verbose=False)
        message = str(error.value)
        assert "worker tcp://" in message and "cannot read memory://lrpnb-only-here/d.npy" in message, message
        assert "\n" not in message and os.listdir(tmp_path) == []
        from lrpnb.pipeline.options import embedded_model

        memory.pipe("/lrpnb-only-here/lenet.txt", open(embedded_model(), "rb").read())
        with pytest.raises(ValueError) as error:
            lrpnb.explain_dataset("memory://lrpnb-only-here/lenet.txt", digits, tmp_path / "r.h5",
                                  batch_size=BATCH, client=client, verbose=False)
        message = str(error.value)
        assert "worker tcp://" in message and "cannot read memory://lrpnb-only-here/lenet.txt" in message, message
    finally:
        memory.rm("/lrpnb-only-here", recursive=True)
    with pytest.raises(ValueError, match=r"memory://x/d\.npz: data from a URL are read from \.npy, \.h5, \.hdf5"):
        lrpnb.explain_dataset(MODEL, "memory://x/d.npz", tmp_path / "r.h5", client=client)
    monkeypatch.setitem(__import__("sys").modules, "fsspec", None)
    with pytest.raises(ImportError, match=r"memory://x/d\.npy: reading data from a URL needs fsspec"):
        lrpnb.explain_dataset(MODEL, "memory://x/d.npy", tmp_path / "r.h5", client=client)


def test_images_from_urls_are_the_local_run_bit_for_bit(tmp_path):
    """A folder of images and a list of them named by URLs: read by the
    workers, the local run's result from the same files on a path; the
    record of the run changes with an image's bytes."""
    import fsspec
    from PIL import Image

    from lrpnb.pipeline.records import fingerprint
    from lrpnb.pipeline.remote import open_data

    folder, memory = tmp_path / "images", fsspec.filesystem("memory")
    folder.mkdir()
    pixels = synthetic_digits(7, seed=5).images
    for k, image in enumerate(pixels):
        Image.fromarray(((image[..., 0] + 1) * 127.5).astype(np.uint8)).save(folder / f"{k}.png")
        memory.pipe(f"/lrpnb-images/digits/{k}.png", (folder / f"{k}.png").read_bytes())
    memory.pipe("/lrpnb-images/digits/notes.txt", b"not an image")
    memory.pipe("/lrpnb-images/some.lst", b"# two of them\ndigits/2.png 7\n\ndigits/5.png\n")
    local = tmp_path / "local.h5"
    lrpnb.explain_dataset(MODEL, folder, local, batch_size=3, verbose=False, **METHOD)
    with h5py.File(local) as handle:
        expected = {name: handle[name][()] for name in RESULTS}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") \
            as cluster, distributed.Client(cluster) as threads:
        for url, rows in (("memory://lrpnb-images/digits", slice(None)), ("memory://lrpnb-images/some.lst", [2, 5])):
            out = tmp_path / "urls.h5"
            lrpnb.explain_dataset(MODEL, url, out, batch_size=3, client=threads, verbose=False, overwrite=True,
                                  **METHOD)
            with h5py.File(out) as handle:
                for name in RESULTS:
                    np.testing.assert_array_equal(handle[name][()], expected[name][rows])
    source = open_data("memory://lrpnb-images/digits", sample_shape=(32, 32, 1))
    assert len(source) == 7
    before = fingerprint("memory://lrpnb-images/digits", source)
    memory.pipe("/lrpnb-images/digits/3.png", (folder / "4.png").read_bytes() + b"\0")
    assert fingerprint("memory://lrpnb-images/digits", source) != before
    with pytest.raises(ValueError, match=r"memory://lrpnb-images/empty: folder holds no .png/.jpg/.jpeg images"):
        memory.pipe("/lrpnb-images/empty/a.txt", b"")
        open_data("memory://lrpnb-images/empty", sample_shape=(32, 32, 1))
    memory.rm("/lrpnb-images", recursive=True)

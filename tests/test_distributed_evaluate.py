"""``evaluate_dataset`` on a Dask cluster (lrpnb.distributed): the local
run's perturbation curves bit for bit, whatever the chunks, and one-line
errors naming the worker and the file it cannot read."""
import os

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
h5py = pytest.importorskip("h5py")

import lrpnb  # noqa: E402
from lrpnb.cli import main  # noqa: E402
from lrpnb.digits import synthetic_digits  # noqa: E402
from lrpnb.distributed import evaluate_run  # noqa: E402

MODEL = "lenet5_synthetic"
# few steps keep the copies cheap; uniform values and the random order draw
# from the seeded stream that the chunks must share out exactly
SETTINGS = dict(steps=6, seed=5, replace="uniform", rule=["epsilon:0.01", "gradient"])


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "digits.npy"
    np.save(path, synthetic_digits(300, seed=11).images)
    return path


def _same(local, cluster):
    """Two Evaluations equal bit for bit."""
    assert list(cluster.curves) == list(local.curves) == ["epsilon 0.01", "gradient", "random"]
    for label, curve in local.curves.items():
        assert cluster.curves[label].dtype == curve.dtype and cluster.curves[label].tobytes() == curve.tobytes()
    assert cluster.target.tobytes() == local.target.tobytes()
    assert cluster.index.tobytes() == local.index.tobytes()
    assert (cluster.origin, cluster.steps) == (local.origin, local.steps)


def test_cluster_curves_are_the_local_curves_bit_for_bit(tmp_path, digits, client, monkeypatch):
    local = lrpnb.evaluate_dataset(MODEL, digits, batch_size=32, verbose=False, **SETTINGS)
    # 10 batches: chunks of 1 and of 3 batches (the last one short)
    for chunk in (1, 3):
        monkeypatch.setattr(evaluate_run, "plan_chunks", lambda spans, unit, workers, batches, planned=evaluate_run
                            .plan_chunks, size=chunk: planned(spans, unit, workers, size))
        cluster = lrpnb.evaluate_dataset(MODEL, digits, batch_size=32, client=client, verbose=False,
                                         out=tmp_path / f"c{chunk}.h5", **SETTINGS)
        _same(local, cluster)
    assert local.curves["epsilon 0.01"].shape == (300, 7)
    # the random values differ from row to row: the chunks did not restart the stream
    assert len(np.unique(local.curves["random"][:, 1])) > 250
    with h5py.File(tmp_path / "c3.h5", "r") as handle:
        assert handle["curves"][...].tobytes() == np.stack(list(local.curves.values())).tobytes()


def test_synthetic_digits_and_the_command_on_its_own_workers(tmp_path, capsys):
    args = ["evaluate", "--count", "40", "--steps", "4", "--batch-size", "8", "--rule", "epsilon:0.01"]
    assert main(args + ["--out", str(tmp_path / "local.h5")]) == 0
    local = capsys.readouterr().out.splitlines()
    assert main(args + ["--out", str(tmp_path / "cluster.h5"), "--workers", "2"]) == 0
    cluster = capsys.readouterr().out.splitlines()
    # the table alike to the last digit (the line of timings aside)
    assert [line for line in cluster if "scored in" not in line] == \
        [line.replace("local.h5", "cluster.h5") for line in local if "scored in" not in line]
    with h5py.File(tmp_path / "local.h5", "r") as a, h5py.File(tmp_path / "cluster.h5", "r") as b:
        assert a["curves"][...].tobytes() == b["curves"][...].tobytes()
        assert a["curves"].shape == (2, 40, 5)


def test_images_with_an_unreadable_one_are_the_local_curves(tmp_path, client):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    pixels = synthetic_digits(30, seed=4).images[..., 0]
    for k, image in enumerate(pixels):
        Image.fromarray(np.round((image + 1) * 127.5).astype(np.uint8)).save(images / f"d{k:02d}.png")
    (images / "d09.png").write_bytes(b"not a png")
    local = lrpnb.evaluate_dataset(MODEL, images, batch_size=4, verbose=False, **SETTINGS)
    cluster = lrpnb.evaluate_dataset(MODEL, images, batch_size=4, client=client, verbose=False, **SETTINGS)
    _same(local, cluster)
    assert 9 not in cluster.index and len(cluster.index) == 29


def test_a_worker_that_cannot_read_the_data_is_named(tmp_path, client, monkeypatch):
    data = tmp_path / "digits.npy"
    np.save(data, synthetic_digits(64, seed=3).images)
    hand_out = evaluate_run.hand_out

    def vanishing(*args, **kwargs):
        os.remove(data)  # checked on the client; gone for the workers (a path not shared)
        return hand_out(*args, **kwargs)

    monkeypatch.setattr(evaluate_run, "hand_out", vanishing)
    with pytest.raises(ValueError) as error:
        lrpnb.evaluate_dataset(MODEL, data, batch_size=32, client=client, verbose=False, out=tmp_path / "c.h5",
                               **SETTINGS)
    message = str(error.value)
    assert "worker tcp://" in message and str(data) in message and "\n" not in message
    assert os.listdir(tmp_path) == []


def test_an_interrupted_cluster_evaluation_writes_nothing(tmp_path, digits, client, monkeypatch, capsys):
    def interrupting(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_run, "hand_out", interrupting)
    status = main(["evaluate", "--model", MODEL, "--data", str(digits), "--steps", "2", "--out",
                   str(tmp_path / "c.h5"), "--scheduler", client.scheduler.address])
    err = capsys.readouterr().err
    assert status == 130 and "lrpnb evaluate: interrupted; nothing written" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []


def test_workers_read_the_data_and_the_relevance_from_where_they_lie(tmp_path, digits, client, monkeypatch):
    maps = tmp_path / "maps.h5"
    lrpnb.explain_dataset(MODEL, digits, maps, rule="epsilon", param=0.01, batch_size=32, verbose=False)
    settings = dict(steps=4, seed=2, count=96, batch_size=32)
    local = lrpnb.evaluate_dataset(MODEL, digits, relevance=str(maps), verbose=False, **settings)
    monkeypatch.chdir(tmp_path)  # relative to the client's folder, not the workers'
    cluster = lrpnb.evaluate_dataset(MODEL, "file://" + str(digits), relevance="maps.h5", client=client,
                                     verbose=False, **settings)
    for label in ("maps.h5", "random"):
        assert cluster.curves[label].tobytes() == local.curves[label].tobytes()
    assert cluster.curves["random"].shape == (96, 5)

"""Damaged HDF5 and MAT data files, and compressed MAT elements that would
inflate past the size limit: every one is a ValueError that starts with the
file's path, whether it fails at open, at the dataset's lookup or at the
read of a later batch, and nothing large is allocated before a refusal."""
import random
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import scipy.io

import lrpnb
from lrpnb.sources import HDF5Source, open_source

h5py = pytest.importorskip("h5py")

_V73_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Tue Dec  1 12:00:00 2026 HDF5 schema 1.00 ."


def _valid_files(folder):
    """{name: (path, expected array)} of one valid file of each kind read
    here: an HDF5 data file (chunked, deflated, several batches), a MATLAB
    v7.3 file, and v5 files with and without compressed elements."""
    X = np.arange(12 * 5 * 3, dtype=np.float32).reshape(12, 5, 3)
    h5 = folder / "good.h5"
    with h5py.File(h5, "w") as handle:
        handle.create_dataset("x", data=X, chunks=(3, 5, 3), compression="gzip")
        handle["labels"] = np.arange(12)
    v73 = folder / "good73.mat"
    data = np.arange(20 * 6.0).reshape(20, 6)
    with h5py.File(v73, "w", userblock_size=512) as handle:
        handle.create_dataset("data", data=data.T, chunks=(6, 5), compression="gzip")
    with open(v73, "r+b") as handle:
        handle.write(_V73_HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")
    files = {"h5": (h5, X), "v73": (v73, data)}
    for name, compress in (("v5z", True), ("v5", False)):
        files[name] = (folder / f"good_{name}.mat", data)
        scipy.io.savemat(files[name][0], {"other": np.ones(3), "data": data}, do_compression=compress)
    return files


def _read_all(path, kind):
    """Read ``path`` as the readers of ``kind`` do: every batch of the HDF5
    dataset (through HDF5Source and open_source's FILE:NAME), or read_data."""
    if kind != "h5":
        return lrpnb.read_data(path)
    for source in (HDF5Source(str(path), "x"), open_source(f"{path}:x")):
        parts = [source.batch(start, min(start + 4, len(source)))[0] for start in range(0, len(source), 4)]
    return np.concatenate(parts)


def _mutations(original, rng, count):
    """``count`` damaged copies of ``original``: bit flips, truncations and
    zeroed blocks, in turn."""
    for trial in range(count):
        data = bytearray(original)
        if trial % 3 == 0:
            data = data[:rng.randrange(len(data))]
        elif trial % 3 == 1:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        else:
            start = rng.randrange(len(data))
            stop = min(len(data), start + rng.randint(1, 64))
            data[start:stop] = bytes(stop - start)
        yield bytes(data)


def test_the_valid_files_read(tmp_path):
    for kind, (path, expected) in _valid_files(tmp_path).items():
        np.testing.assert_array_equal(_read_all(path, kind), expected, err_msg=kind)


@pytest.mark.parametrize("kind", ["h5", "v73", "v5z", "v5"])
def test_damaged_files_are_read_or_refused_naming_the_file(tmp_path, kind):
    path, _ = _valid_files(tmp_path)[kind]
    original = path.read_bytes()
    rng = random.Random(f"hostile-{kind}")
    refused = 0
    for trial, data in enumerate(_mutations(original, rng, 150)):
        bad = tmp_path / f"bad{trial}{path.suffix}"
        bad.write_bytes(data)
        try:
            _read_all(bad, kind)
        except ValueError as error:
            assert str(error).startswith(str(bad)), (trial, error)
            refused += 1
    # the damage reaches the readers: a third of the copies are truncated
    assert refused >= 50, refused


def test_an_hdf5_batch_that_cannot_be_read_names_the_file_and_dataset(tmp_path):
    path = tmp_path / "late.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("x", data=np.arange(8 * 100.0).reshape(8, 100), chunks=(4, 100),
                              compression="gzip")
        offset = handle["x"].id.get_chunk_info(1).byte_offset
    data = bytearray(path.read_bytes())
    data[offset + 10:offset + 20] = bytes(10)  # the second chunk's deflate stream
    path.write_bytes(bytes(data))
    source = open_source(f"{path}:x")
    np.testing.assert_array_equal(source.batch(0, 4)[0], np.arange(400.0).reshape(4, 100))
    with pytest.raises(ValueError) as caught:
        source.batch(4, 8)
    message = str(caught.value)
    assert message.startswith(f"{path}: cannot read samples 4..7 of the dataset 'x'"), message


def test_a_file_that_is_not_hdf5_is_refused_at_open(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("not HDF5\n")
    with pytest.raises(ValueError, match=r"text.h5: cannot read the file as HDF5 .*not HDF5$"):
        open_source(f"{path}:x")


# ---------------------------------------------------------------- compressed MAT bombs
def _compressed_mat(path, rows, step=1 << 20):
    """A v5 MAT-file whose one compressed element holds the double matrix
    'data' of ``rows`` x 1 zeros, deflated piece by piece (never whole in
    memory): a few kilobytes of file per 8 MB of matrix."""
    values = rows * 8
    name = b"data\x00\x00\x00\x00"
    body = (struct.pack("<II", 6, 8) + struct.pack("<II", 6, 0)  # flags: mxDOUBLE_CLASS
            + struct.pack("<II", 5, 8) + struct.pack("<ii", rows, 1)
            + struct.pack("<II", 1, 4) + name
            + struct.pack("<II", 9, values))
    compressor = zlib.compressobj(9)
    stream = [compressor.compress(struct.pack("<II", 14, len(body) + values) + body)]
    zeros = bytes(min(step, values))
    for start in range(0, values, step):
        stream.append(compressor.compress(zeros[:min(step, values - start)]))
    stream.append(compressor.flush())
    compressed = b"".join(stream)
    header = b"MATLAB 5.0 MAT-file, written by a test".ljust(116, b" ") + b"\x00" * 8 + b"\x00\x01IM"
    path.write_bytes(header + struct.pack("<II", 15, len(compressed)) + compressed)
    return path


def test_a_compressed_mat_bomb_is_refused_before_it_is_inflated(tmp_path):
    # 200 MB of zeros in a file of about 200 KB: past the 64 MB that any
    # file may give, and past 100 times its size
    path = _compressed_mat(tmp_path / "bomb.mat", 25_000_000)
    assert path.stat().st_size < 400_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as caught:
            lrpnb.read_data(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert message.startswith(f"{path}: the compressed variables, inflated, would take 200,000,064 bytes"), message
    assert "LRPNB_MAX_ARRAY_BYTES" in message
    assert peak < 8 << 20, peak


def test_the_size_limit_of_compressed_mat_elements_follows_the_environment(tmp_path, monkeypatch):
    path = _compressed_mat(tmp_path / "zeros.mat", 250_000)  # 2 MB of zeros
    np.testing.assert_array_equal(lrpnb.read_data(path), np.zeros((250_000, 1)))
    monkeypatch.setenv("LRPNB_MAX_ARRAY_BYTES", "1000000")
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"zeros.mat: the compressed variables, inflated, would take "
                                             r"2,000,064 bytes, more than the 1,000,000 allowed"):
            lrpnb.read_data(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_compressed_elements_count_together(tmp_path, monkeypatch):
    # each of the two elements fits the limit, both together do not
    path = tmp_path / "two.mat"
    scipy.io.savemat(path, {"a": np.zeros((300, 300)), "data": np.zeros((300, 300))}, do_compression=True)
    monkeypatch.setenv("LRPNB_MAX_ARRAY_BYTES", "1000000")
    with pytest.raises(ValueError, match=r"two.mat: the compressed variables, inflated, would take 1,440,"):
        lrpnb.read_data(path)


def test_a_compressed_mat_bomb_model_is_refused(tmp_path, monkeypatch):
    path = _compressed_mat(tmp_path / "model.mat", 250_000)
    monkeypatch.setenv("LRPNB_MAX_ARRAY_BYTES", "1000000")
    with pytest.raises(ValueError, match=r"model.mat: the compressed variables, inflated, would take"):
        lrpnb.load(path)


def test_legitimate_compressed_data_still_reads(tmp_path):
    rng = np.random.default_rng(3)
    # over 1 MB inflated: read in several steps
    for array in (rng.normal(size=(400, 500)), rng.integers(0, 255, (60, 70)).astype(np.uint8),
                  np.arange(24, dtype=np.float32).reshape(2, 3, 4)):
        path = tmp_path / "ok.mat"
        scipy.io.savemat(path, {"other": np.ones(2), "data": array}, do_compression=True)
        actual = lrpnb.read_data(path)
        assert actual.dtype == array.dtype and np.array_equal(actual, array)

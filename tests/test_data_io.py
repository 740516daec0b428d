import numpy as np
import scipy.io
import pytest

import lrpnb
from conftest import DATA, need_shared


@pytest.mark.parametrize("ext", [".npy", ".npz", ".mat", ".txt"])
def test_round_trip(tmp_path, ext):
    array = np.random.default_rng(0).normal(size=(5, 7))
    lrpnb.write_data(array, tmp_path / f"a{ext}")
    np.testing.assert_array_equal(lrpnb.read_data(tmp_path / f"a{ext}"), array)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"a{ext}"]


def test_images_keep_their_shape_in_binary_formats(tmp_path):
    array = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    for ext in (".npy", ".npz", ".mat"):
        lrpnb.write_data(array, tmp_path / f"a{ext}")
        np.testing.assert_array_equal(lrpnb.read_data(tmp_path / f"a{ext}"), array)
    with pytest.raises(ValueError, match="at most 2 dimensions"):
        lrpnb.write_data(array, tmp_path / "a.txt")


def test_toolbox_data_files():
    images = lrpnb.read_data(need_shared(DATA / "test_images.mat"))
    assert images.shape == (10000, 784) and images.dtype == np.uint8
    labels = lrpnb.read_data(need_shared(DATA / "test_labels.npy"))  # a Python 2 .npy
    assert labels.shape == (10000, 1)
    np.testing.assert_array_equal(lrpnb.read_data(need_shared(DATA / "test_labels.mat")).ravel(), labels.ravel())


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data file not found"):
        lrpnb.read_data(tmp_path / "absent.npy")
    with pytest.raises(ValueError, match="unknown data format '.csv'"):
        lrpnb.read_data(tmp_path / "x.csv")
    np.savez(tmp_path / "two.npz", a=np.ones(2), b=np.ones(3))
    with pytest.raises(ValueError, match=r"holds \['a', 'b'\]; expected a key 'data'"):
        lrpnb.read_data(tmp_path / "two.npz")
    (tmp_path / "bad.txt").write_text("1 2\n3 x\n")
    with pytest.raises(ValueError, match="bad.txt: cannot read .txt data"):
        lrpnb.read_data(tmp_path / "bad.txt")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="bad.npy: cannot read .npy data"):
        lrpnb.read_data(tmp_path / "bad.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="objects.npy"):
        lrpnb.read_data(tmp_path / "objects.npy")
    scipy.io.savemat(tmp_path / "other.mat", {"images": np.ones(3)})
    with pytest.raises(ValueError, match=r"no numeric variable 'data' \(found \['images'\]\)"):
        lrpnb.read_data(tmp_path / "other.mat")


def test_written_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        lrpnb.write_data(np.ones((2, 2)), tmp_path / "a.npy")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(os.stat(tmp_path / "a.npy").st_mode) == 0o644


# ---------------------------------------------------------------- hostile files
def _mat_with_type(tmp_path, code):
    path = tmp_path / f"t{code}.mat"
    scipy.io.savemat(path, {"data": np.zeros((4, 64))}, do_compression=False)
    data = bytearray(path.read_bytes())
    data[176:180] = code.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("code", [0x100, 20, 0xFFFF, 0x7FFF, 0xE8D4])
def test_a_forged_mat_element_type_is_a_clear_error(tmp_path, code):
    # scipy 1.17's loadmat segfaulted, raised SIGBUS or ZeroDivisionError on these
    path = _mat_with_type(tmp_path, code)
    with pytest.raises(ValueError, match=rf"t{code}.mat: malformed MAT-file"):
        lrpnb.read_data(path)


def test_mat_files_read_as_scipy_reads_them(tmp_path):
    rng = np.random.default_rng(0)
    for version in ("4", "5"):
        for compress in (False, True) if version == "5" else (False,):
            for array in (rng.normal(size=(3, 5)), rng.integers(0, 255, (4, 7)).astype(np.uint8),
                          rng.normal(size=(2, 3, 4)).astype(np.float32), np.zeros((0, 3))):
                if version == "4" and array.ndim > 2:
                    continue
                path = tmp_path / "m.mat"
                scipy.io.savemat(path, {"other": np.ones(2), "data": array}, format=version,
                                 do_compression=compress)
                expected = scipy.io.loadmat(path)["data"]
                actual = lrpnb.read_data(path)
                assert actual.dtype == expected.dtype and np.array_equal(actual, expected)


def test_random_damage_to_data_files_is_always_a_value_error(tmp_path):
    rng = np.random.default_rng(1)
    originals = {}
    for ext in (".npy", ".npz", ".mat"):
        path = tmp_path / f"good{ext}"
        lrpnb.write_data(rng.normal(size=(6, 9)), path)
        originals[ext] = path.read_bytes()
    for trial in range(300):
        ext = (".npy", ".npz", ".mat")[trial % 3]
        data = bytearray(originals[ext])
        if trial % 4 == 0:
            data = data[:int(rng.integers(0, len(data)))]  # truncated
        else:
            for _ in range(int(rng.integers(1, 6))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        path = tmp_path / f"bad{trial}{ext}"
        path.write_bytes(bytes(data))
        try:
            lrpnb.read_data(path)
        except ValueError as error:
            assert str(error).startswith(str(path)), error


@pytest.mark.parametrize("header, message", [
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }", "declares shape"),
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (3,", "cannot read .npy data"),
    ("{'descr': '|O', 'fortran_order': False, 'shape': (3,), }", "cannot read .npy data"),
])
def test_npy_headers_that_lie(tmp_path, header, message):
    text = header.encode("latin1")
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    path = tmp_path / "lie.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + bytes(64))
    with pytest.raises(ValueError, match=message):
        lrpnb.read_data(path)


def test_an_npz_member_declaring_more_than_it_holds(tmp_path):
    import zipfile

    text = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }"
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    with zipfile.ZipFile(tmp_path / "lie.npz", "w") as archive:
        archive.writestr("data.npy", b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + bytes(64))
    with pytest.raises(ValueError, match="declares shape"):
        lrpnb.read_data(tmp_path / "lie.npz")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "lie.npz").read_bytes()[:40])
    with pytest.raises(ValueError, match="cut.npz: cannot read .npz data"):
        lrpnb.read_data(tmp_path / "cut.npz")

import numpy as np
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
    np.testing.assert_array_equal(lrpnb.read_data(DATA / "test_labels.mat").ravel(), labels.ravel())


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
    import scipy.io
    scipy.io.savemat(tmp_path / "other.mat", {"images": np.ones(3)})
    with pytest.raises(ValueError, match=r"no variable 'data' \(found \['images'\]\)"):
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

"""Hostile model and data files (issue 27): every one is a ValueError naming
the file (or the documented behaviour), never a crash, a huge allocation, a
hang or a read of a file that was not named."""
import json
import os
import random
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

import lrpnb
from conftest import MODELS, ROOT, need_shared

# ---------------------------------------------------------------- .mat models
#: loads each file named in argv in this process and prints one JSON line:
#: "ok" or the exception's type and message. A crash is a signal, seen as a
#: negative return code.
_LOAD_ALL = """
import json, sys, warnings
import lrpnb
results = []
for path in sys.argv[1:]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lrpnb.load(path)
        results.append(["ok", ""])
    except Exception as error:
        results.append([type(error).__name__, str(error)])
print(json.dumps(results))
"""


def _load_in_subprocess(paths):
    done = subprocess.run([sys.executable, "-c", _LOAD_ALL, *map(str, paths)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, f"the process ended with {done.returncode}: {done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def _uncompressed(data):
    """The v5 file ``data`` with its compressed elements stored inflated
    (so that forged bytes reach the element tags), subsystem offset moved."""
    out, pos, moved = bytearray(data[:128]), 128, {}
    while pos < len(data):
        kind, size = struct.unpack_from("<II", data, pos)
        moved[pos] = len(out)
        out += zlib.decompress(data[pos + 8:pos + 8 + size]) if kind == 15 else data[pos:pos + 8 + size]
        pos += 8 + size
    struct.pack_into("<Q", out, 116, moved[struct.unpack_from("<Q", data, 116)[0]])
    return bytes(out)


def _element_tags(data):
    """Offsets of 8-byte-aligned words that look like element tags of a
    numeric, text or matrix element."""
    return [p for p in range(128, len(data) - 8, 8)
            if struct.unpack_from("<I", data, p)[0] in (1, 2, 5, 6, 9, 14)
            and 0 < struct.unpack_from("<I", data, p + 4)[0] < len(data)]


def test_the_toolbox_mat_model_still_loads():
    mat = lrpnb.load(need_shared(MODELS / "LeNet-5.mat"))
    txt = lrpnb.load(need_shared(MODELS / "LeNet-5.txt"))
    X = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1))
    np.testing.assert_array_equal(mat.scores(X), txt.scores(X))


def test_uncompressed_mat_model_loads(tmp_path):
    # the form Matlab's -v6 writes: every element tag in the open
    plain = _uncompressed(need_shared(MODELS / "LeNet-5.mat").read_bytes())
    (tmp_path / "plain.mat").write_bytes(plain)
    assert len(lrpnb.load(tmp_path / "plain.mat").layers) == 11


def test_forged_truncated_and_mutated_mat_models_are_clear_errors(tmp_path):
    # mat-io's compiled reader died of SIGSEGV or SIGBUS on a forged element type
    original = need_shared(MODELS / "LeNet-5.mat").read_bytes()
    plain = _uncompressed(original)
    files, forged = [], []
    for index, offset in enumerate(_element_tags(plain)[:10]):
        for code in (0x100, 20, 0xFFFF):
            data = bytearray(plain)
            struct.pack_into("<I", data, offset, code)
            files.append(tmp_path / f"forged{index}_{code}.mat")
            files[-1].write_bytes(bytes(data))
            forged.append(files[-1])
    for cut in (100, 128, 200, len(plain) // 2, len(plain) - 3):
        files.append(tmp_path / f"cut{cut}.mat")
        files[-1].write_bytes(plain[:cut])
        forged.append(files[-1])
    rng = random.Random(27)
    for trial in range(30):
        data = bytearray(plain if trial % 3 else original)
        data[rng.randrange(len(data))] = rng.randrange(256)
        files.append(tmp_path / f"mutated{trial}.mat")
        files[-1].write_bytes(bytes(data))
    results = _load_in_subprocess(files)
    for path, (kind, message) in zip(files, results):
        # a mutated weight may still be a model; anything else names the file
        assert kind == "ValueError" and path.name in message or (kind == "ok" and path not in forged), \
            (path.name, kind, message)


def test_a_forged_type_in_a_small_mat_file_is_refused(tmp_path):
    import scipy.io

    path = tmp_path / "small.mat"
    scipy.io.savemat(path, {"W": np.zeros((4, 64))}, do_compression=False)
    data = bytearray(path.read_bytes())
    data[176:180] = (0xFFFF).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    [(kind, message)] = _load_in_subprocess([path])
    assert kind == "ValueError" and "small.mat: malformed MAT-file" in message


def test_a_v73_mat_model_is_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "model.mat"
    with h5py.File(path, "w", userblock_size=512) as handle:
        handle["W"] = np.ones(3)
    with pytest.raises(ValueError, match=r"model.mat: .*v7.3"):
        lrpnb.load(path)


# ---------------------------------------------------------------- .nn pickles
class _CallsNdarray:
    """Pickles as numpy.ndarray((20000, 10000)): 1.5 GiB of uninitialised
    memory from a file of a few hundred bytes."""

    def __reduce__(self):
        return np.ndarray, ((20000, 10000),)


@pytest.mark.parametrize("protocol", [2, 5])
def test_a_pickle_cannot_call_ndarray(tmp_path, protocol):
    import io

    from lrpnb.model_pickle import _STAND_INS, _ToolboxPickler

    model = _STAND_INS["Sequential"]()
    layer = _STAND_INS["Linear"]()
    layer.__dict__.update(W=_CallsNdarray(), B=np.zeros(10000))
    model.__dict__["modules"] = [layer]
    path = tmp_path / "bomb.nn"
    buffer = io.BytesIO()
    _ToolboxPickler(buffer, protocol=protocol).dump(model)
    path.write_bytes(buffer.getvalue())
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError, match=r"bomb.nn: .*refusing to call numpy.ndarray"):
        lrpnb.load(path)


def test_pickled_models_still_load(tmp_path):
    net = lrpnb.load("lenet5_synthetic")
    lrpnb.save(net, tmp_path / "m.nn")
    again = lrpnb.load(tmp_path / "m.nn")
    X = np.random.default_rng(1).uniform(-1, 1, (1, 32, 32, 1))
    np.testing.assert_array_equal(net.scores(X), again.scores(X))


# ---------------------------------------------------------------- HDF5 inputs
def _hdf5_reading_another_file(tmp_path, kind, name="ds", suffix=".h5", userblock_size=0):
    """An HDF5 file whose dataset ``name`` has its values in other files:
    external raw storage or a virtual layout."""
    h5py = pytest.importorskip("h5py")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(8, dtype="<f8").tobytes())
    path = tmp_path / f"{kind}{suffix}"
    with h5py.File(path, "w", userblock_size=userblock_size) as handle:
        if kind == "external":
            handle.create_dataset(name, shape=(2, 4), dtype="<f8", external=[(str(secret), 0, 64)])
        else:
            other = tmp_path / "other.h5"
            with h5py.File(other, "w") as source:
                source["x"] = np.ones((2, 4))
            layout = h5py.VirtualLayout(shape=(2, 4), dtype="f8")
            layout[:] = h5py.VirtualSource(str(other), "x", shape=(2, 4))
            handle.create_virtual_dataset(name, layout)
    return path


@pytest.mark.parametrize("kind", ["external", "virtual"])
def test_hdf5_datasets_stored_in_other_files_are_refused(tmp_path, kind):
    from lrpnb.sources import open_source

    path = _hdf5_reading_another_file(tmp_path, kind)
    with pytest.raises(ValueError, match=rf"{kind}.h5:ds: a (virtual|dataset with external)"):
        open_source(f"{path}:ds")


@pytest.mark.parametrize("kind", ["external", "virtual"])
def test_a_v73_mat_data_file_stored_in_other_files_is_refused(tmp_path, kind):
    path = _hdf5_reading_another_file(tmp_path, kind, name="data", suffix=".mat", userblock_size=512)
    _matlab_header(path)
    with pytest.raises(ValueError, match=rf"{kind}.mat:data: a (virtual|dataset with external)"):
        lrpnb.read_data(path)


# ---------------------------------------------------------------- MATLAB v7.3 data
def _matlab_header(path):
    """Write a MATLAB v7.3 header text into the 512-byte user block."""
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Tue Dec  1 12:00:00 2026 HDF5 schema 1.00 ."
    with open(path, "r+b") as handle:
        handle.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")


def test_matlab_v73_data_files_are_read(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "v73.mat"
    array = np.arange(12.0).reshape(3, 4)
    with h5py.File(path, "w", userblock_size=512) as handle:
        handle["data"] = array.T  # MATLAB stores column-major: HDF5 sees the transpose
    _matlab_header(path)
    assert path.read_bytes()[512:520] == b"\x89HDF\r\n\x1a\n"
    np.testing.assert_array_equal(lrpnb.read_data(path), array)


# ---------------------------------------------------------------- .npz members
def test_an_npz_member_that_is_not_npy_is_refused(tmp_path):
    import zipfile

    path = tmp_path / "raw.npz"
    np.savez(path, data=np.ones((2, 2)))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("data", b"\x00" * 64)
    with pytest.raises(ValueError, match=r"raw.npz: holds members that are not .npy arrays: \['data'\]"):
        lrpnb.read_data(path)
    plain = tmp_path / "plain.npz"
    np.savez(plain, data=np.ones((2, 2)), other=np.zeros(3))
    np.testing.assert_array_equal(lrpnb.read_data(plain), np.ones((2, 2)))


# ---------------------------------------------------------------- regular files only
_FIFO_CHECKS = """
import json, sys
import lrpnb
from lrpnb.sources import list_file, load_image, open_source
folder = sys.argv[1]
checks = {
    "model.nn": lambda p: lrpnb.load(p),
    "model.mat": lambda p: lrpnb.load(p),
    "data.npy": lambda p: lrpnb.read_data(p),
    "data.txt": lambda p: lrpnb.read_data(p),
    "data.h5": lambda p: open_source(p, dataset="x"),
    "list.lst": lambda p: open_source(p, sample_shape=(8, 8, 1)),
    "image.png": lambda p: load_image(p, (8, 8), 1, (-1, 1)),
    "zero.nn": lambda p: lrpnb.load(p),
}
results = {}
for name, check in checks.items():
    try:
        check(folder + "/" + name)
        results[name] = "ok"
    except Exception as error:
        results[name] = f"{type(error).__name__}: {error}"
source = open_source(folder + "/images", sample_shape=(8, 8, 1))
_, problems, kept = source.batch(0, len(source))
results["folder"] = [kept, [message for _, message in problems]]
print(json.dumps(results))
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_fifos_and_devices_are_refused_before_they_are_opened(tmp_path):
    from PIL import Image

    for name in ("model.nn", "model.mat", "data.npy", "data.txt", "data.h5", "list.lst", "image.png"):
        os.mkfifo(tmp_path / name)
    os.symlink("/dev/zero", tmp_path / "zero.nn")
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "images" / "a.png")
    os.mkfifo(tmp_path / "images" / "b.png")
    # a subprocess with a timeout: a FIFO opened by mistake would block forever
    done = subprocess.run([sys.executable, "-c", _FIFO_CHECKS, str(tmp_path)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("model.nn", "model.mat", "data.npy", "data.txt", "data.h5", "list.lst", "image.png"):
        assert results[name].startswith("ValueError: ") and name in results[name] \
            and "a FIFO, not a regular file" in results[name], results[name]
    assert "zero.nn: the model file is a device, not a regular file" in results["zero.nn"]
    kept, problems = results["folder"]
    assert kept == [0] and len(problems) == 1 and "b.png: the image is a FIFO" in problems[0]


# ---------------------------------------------------------------- lrpnb info
def test_info_escapes_node_names(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from lrpnb.cli.info import run_info

    evil = "\x1b]0;owned\x07\x1b[2Jrelu"
    nodes = [helper.make_node("Relu", ["x"], ["r"], name=evil),
             helper.make_node("Add", ["r", "x"], ["y"], name="skip")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)

    class Args:
        model = str(path)

    run_info(Args)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]0;owned\\x07\\x1b[2Jrelu" in out


def test_onnx_external_data_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    (tmp_path / "secret.bin").write_bytes(np.arange(16, dtype="<f4").tobytes())
    weight = numpy_helper.from_array(np.zeros((4, 4), np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "secret.bin"), ("offset", "0"), ("length", "64")):
        weight.external_data.add(key=key, value=value)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])], [weight])
    path = tmp_path / "external.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(ValueError, match=r"external.onnx: tensor 'w' is stored in another file"):
        lrpnb.load(path)


def test_a_network_prints_node_names_escaped():
    evil = "\x1b]0;owned\x07relu"
    net = lrpnb.Network([lrpnb.Node(evil, lrpnb.Rect(), "input"),
                         lrpnb.Node("skip", lrpnb.Add(), [evil, "input"])])
    for text in (repr(net), repr(net.nodes[0]), repr(net.nodes[1])):
        assert "\x1b" not in text and "\x07" not in text and "\\x1b]0;owned\\x07relu" in text

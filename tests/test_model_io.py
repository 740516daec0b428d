"""Model files: round trips, the toolbox's variants, and every kind of bad file."""
import os
import pickle
import pickletools
import sys

import numpy as np
import pytest

import lrpnb
from conftest import EXAMPLES, MODELS, need_shared


def weights(net):
    return [(layer.describe(), getattr(layer, "W", None), getattr(layer, "B", None))
            for layer in net.layers]


def assert_same_network(a, b):
    for (da, Wa, Ba), (db, Wb, Bb) in zip(weights(a), weights(b), strict=True):
        assert da == db
        if Wa is not None:
            np.testing.assert_array_equal(Wa, Wb)
            np.testing.assert_array_equal(Ba, Bb)


def random_network(seed=0):
    rng = np.random.default_rng(seed)
    return lrpnb.Network([
        lrpnb.Convolution(rng.normal(size=(3, 2, 2, 4)), rng.normal(size=4), stride=(2, 1)),
        lrpnb.Rect(), lrpnb.MaxPool((2, 3), (1, 2)), lrpnb.SumPool((1, 1), (1, 1)),
        lrpnb.Tanh(), lrpnb.Flatten(), lrpnb.Linear(rng.normal(size=(60, 3)) / 8, rng.normal(size=3)),
        lrpnb.SoftMax()])


@pytest.mark.parametrize("ext", [".txt", ".nn", ".pickle"])
def test_round_trip_is_exact(tmp_path, ext):
    net = random_network()
    path = tmp_path / f"model{ext}"
    lrpnb.save(net, path)
    again = lrpnb.load(path)
    assert_same_network(net, again)
    X = np.random.default_rng(1).normal(size=(2, 9, 12, 2))
    np.testing.assert_array_equal(again.explain(X), net.explain(X))


def test_lenet_txt_round_trip(tmp_path):
    net = lrpnb.load(need_shared(MODELS / "LeNet-5.nn"))
    lrpnb.save(net, tmp_path / "lenet.txt")
    assert_same_network(net, lrpnb.load(tmp_path / "lenet.txt"))
    lrpnb.save(net, tmp_path / "lenet.nn")
    assert_same_network(net, lrpnb.load(tmp_path / "lenet.nn"))


def test_written_pickle_names_only_toolbox_classes(tmp_path):
    lrpnb.save(random_network(), tmp_path / "m.nn")
    names = {arg for op, arg, _ in pickletools.genops((tmp_path / "m.nn").read_bytes())
             if op.name == "GLOBAL"}
    assert {"modules.convolution Convolution", "modules.sequential Sequential",
            "modules.linear Linear", "numpy.core.multiarray _reconstruct"} <= names
    assert not any("lrpnb" in name for name in names)


def test_legacy_linear_variant_reads_like_the_modern_one():
    assert_same_network(lrpnb.load(EXAMPLES / "mlp.txt"), lrpnb.load(EXAMPLES / "mlp_legacy.txt"))


def test_numbers_written_as_numpy_scalars(tmp_path):
    (tmp_path / "m.txt").write_text("Linear 2 1\nnp.float64(0.5) np.float64(-1.25e-3)\nnp.float64(2.0)\n")
    layer = lrpnb.load(tmp_path / "m.txt").layers[0]
    np.testing.assert_array_equal(layer.W, [[0.5], [-1.25e-3]])
    np.testing.assert_array_equal(layer.B, [2.0])


def test_format_can_be_forced(tmp_path):
    lrpnb.save(random_network(), tmp_path / "model.weights", fmt="txt")
    assert_same_network(lrpnb.load(tmp_path / "model.weights", fmt="txt"), random_network())


@pytest.mark.parametrize("text, message", [
    ("", "the model file is empty"),
    ("\n  \n", "the model file is empty"),
    ("Conv 5 5 1 10 1 1\n", "line 1: unknown layer 'Conv'"),
    ("Rect\nLinear 2\n1 2\n0\n", "line 2: Linear needs 2 sizes"),
    ("Linear 2 -3\n", "line 1: Linear: n must be positive"),
    ("Linear 2 x\n", "line 1: Linear: n must be an integer"),
    ("Linear 2 2\n1 2 3\n0 0\n", r"line 2: Linear 2 2 weights: expected 4 numbers, got 3"),
    ("Linear 2 2\n1 2 3 4\n0 0 0\n", "line 3: Linear bias: expected 2 numbers, got 3"),
    ("Linear 2 2\n1 2 three 4\n0 0\n", "line 2: Linear weights: 'three' is not a number"),
    ("Linear 2 2\n1 2 nan 4\n0 0\n", "line 2: Linear weights contains NaN"),
    ("Linear 2 2\n1 2 3 4\n", "line 3: file ends where Linear bias was expected"),
    ("Linear 3 2\n1 2\n3 4\n", "line 3: Linear weight row: expected 2 numbers, got 0|line 4: file ends"),
    ("Convolution 2 2 1 1 1\n", "line 1: Convolution needs 6 sizes"),
    ("Convolution 2 2 1 1 1 1\n1 2 3\n0\n", "expected 4 numbers, got 3"),
    ("SumPool 2 2 2\n", "line 1: SumPool needs 4 sizes"),
    ("MaxPool 2 0 2 2\n", "line 1: MaxPool: w must be positive"),
    ("Rect 3\n", "line 1: Rect takes no sizes"),
])
def test_malformed_text_models(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        lrpnb.load(path)
    assert str(path) in str(info.value)


def test_binary_garbage_as_text(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00Linear")
    with pytest.raises(ValueError, match="not a text model file"):
        lrpnb.load(tmp_path / "bad.txt")


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        lrpnb.load(tmp_path / "absent.txt")
    with pytest.raises(ValueError, match="cannot tell the model format"):
        lrpnb.load(tmp_path / "model.xyz")
    with pytest.raises(ValueError, match="export it to ONNX"):  # another framework's model file
        lrpnb.load(tmp_path / "model.h5")
    with pytest.raises(ValueError, match="unknown model format 'keras'"):
        lrpnb.load(tmp_path / "model.txt", fmt="keras")
    with pytest.raises(IsADirectoryError):
        lrpnb.load(tmp_path, fmt="txt")


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.nn"
    path.write_bytes(pickle.dumps(_Exploit(marker), protocol=2))
    with pytest.raises(ValueError, match=r"refusing to load (posix|os)\.system"):
        lrpnb.load(path)
    assert not marker.exists()


def test_hostile_pickle_inside_a_toolbox_model_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.nn"
    lrpnb.save(random_network(), path)
    data = path.read_bytes()
    # smuggle a call into the state of a module: builtins.eval as a global
    evil = data.replace(b"cnumpy.core.multiarray\n_reconstruct\n", b"cbuiltins\neval\n", 1)
    path.write_bytes(evil)
    with pytest.raises(ValueError, match="refusing to load builtins.eval"):
        lrpnb.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload, message", [
    (b"", "not a readable toolbox model pickle"),
    (b"\x80\x02}q\x00.", "does not hold a toolbox Sequential"),
    (b"not a pickle at all", "not a readable toolbox model pickle"),
])
def test_broken_pickles(tmp_path, payload, message):
    (tmp_path / "bad.nn").write_bytes(payload)
    with pytest.raises(ValueError, match=message):
        lrpnb.load(tmp_path / "bad.nn")


def test_truncated_pickle(tmp_path):
    lrpnb.save(random_network(), tmp_path / "m.nn")
    data = (tmp_path / "m.nn").read_bytes()
    (tmp_path / "m.nn").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable toolbox model pickle"):
        lrpnb.load(tmp_path / "m.nn")


def test_not_a_mat_file(tmp_path):
    (tmp_path / "bad.mat").write_bytes(b"MATLAB 5.0 garbage" * 10)
    with pytest.raises(ValueError, match="bad.mat"):
        lrpnb.load(tmp_path / "bad.mat")


def test_mat_file_without_a_model(tmp_path):
    import scipy.io

    scipy.io.savemat(tmp_path / "data.mat", {"data": np.ones((2, 2))})
    with pytest.raises(ValueError, match=r"expected one modules.Sequential object, found 0"):
        lrpnb.load(tmp_path / "data.mat")


def test_save_is_atomic_and_refuses_mat(tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("keep me")
    with pytest.raises(ValueError, match="writing .mat models is not supported"):
        lrpnb.save(random_network(), tmp_path / "model.mat")
    with pytest.raises(TypeError):
        lrpnb.save("not a network", path)
    assert path.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.txt"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        lrpnb.save(random_network(), tmp_path / "no" / "such" / "model.txt")


# ---------------------------------------------------------------- current toolbox pickles
def _toolbox_modules(monkeypatch):
    """The toolbox's class names in modules of their own, as its Python 3
    code defines them (Module sets lrp_var = None, lrp_param = 1.0)."""
    import types

    classes = {}
    package = types.ModuleType("modules")
    monkeypatch.setitem(sys.modules, "modules", package)
    for name in ("Module", "Sequential", "Linear", "Convolution", "SumPool", "Rect", "Flatten", "SoftMax"):
        module = types.ModuleType(f"modules.{name.lower()}")
        cls = type(name, (object,), {"__module__": module.__name__})
        setattr(module, name, cls)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        classes[name] = cls
    return classes


def _toolbox_model(classes, rng):
    def make(name, **attributes):
        layer = classes[name]()
        layer.lrp_var, layer.lrp_param = None, 1.0
        layer.__dict__.update(attributes)
        return layer

    W1 = np.asfortranarray(rng.normal(size=(3, 3, 1, 4)))  # a Fortran-ordered array too
    layers = [make("Convolution", W=W1, B=rng.normal(size=4), stride=(1, 1), fh=3, fw=3, fd=1, n=4),
              make("Rect"), make("SumPool", pool=(2, 2), stride=(2, 2)), make("Flatten"),
              make("Linear", W=rng.normal(size=(36, 3)).astype(np.float32), B=np.zeros(3, np.float32),
                   m=36, n=3, lrp_var="flat"),
              make("SoftMax")]
    return make("Sequential", modules=layers), layers


def _unframed(data):
    """The pickle without its FRAME opcodes (optional for the reader), so
    that strings in it can change length."""
    import pickletools

    ops = list(pickletools.genops(data))
    out = bytearray()
    for k, (op, _, pos) in enumerate(ops):
        end = ops[k + 1][2] if k + 1 < len(ops) else len(data)
        if op.name != "FRAME":
            out += data[pos:end]
    return bytes(out)


@pytest.mark.parametrize("numpy_name", ["numpy._core.numeric", "numpy.core.numeric"])
def test_highest_protocol_pickles_of_the_current_toolbox(tmp_path, monkeypatch, numpy_name):
    """The toolbox saves with pickle.HIGHEST_PROTOCOL (5) under Python 3:
    numpy then stores arrays through _frombuffer (numpy 2 names its module
    numpy._core.numeric, numpy 1 numpy.core.numeric)."""
    classes = _toolbox_modules(monkeypatch)
    root, layers = _toolbox_model(classes, np.random.default_rng(0))
    data = _unframed(pickle.dumps(root, pickle.HIGHEST_PROTOCOL))
    assert b"_frombuffer" in data
    if numpy_name == "numpy.core.numeric":
        data = data.replace(b"\x8c\x13numpy._core.numeric", b"\x8c\x12numpy.core.numeric")
    path = tmp_path / "model.nn"
    path.write_bytes(data)
    net = lrpnb.load(path)
    assert [layer.describe() for layer in net.layers] == [
        "Convolution 3 3 1 4 1 1", "Rect", "SumPool 2 2 2 2", "Flatten", "Linear 36 3", "SoftMax"]
    np.testing.assert_array_equal(net.layers[0].W, layers[0].W)
    assert net.layers[4].W.dtype == np.float32 and net.layers[4].lrp_var == "flat"
    assert net.layers[4].lrp_param is None  # the toolbox's 1.0, which flat ignores, is dropped
    np.testing.assert_array_equal(net.layers[4].W, layers[4].W)


@pytest.mark.parametrize("edit, message", [
    ((b"\x8c\x02f8", b"\x8c\x02U2"), "only numeric dtypes are admitted, got 'U2'"),
    ((b"K\x03K\x03K\x01K\x04t", b"K\x03K\x03K\x01K\x05t"),
     r"an array of shape \(3, 3, 1, 5\) and dtype float64 needs 360 bytes, the pickle holds 288"),
])
def test_forged_frombuffer_arrays_are_refused(tmp_path, monkeypatch, edit, message):
    classes = _toolbox_modules(monkeypatch)
    root, _ = _toolbox_model(classes, np.random.default_rng(0))
    data = _unframed(pickle.dumps(root, pickle.HIGHEST_PROTOCOL))
    assert edit[0] in data
    path = tmp_path / "model.nn"
    path.write_bytes(data.replace(edit[0], edit[1], 1))
    with pytest.raises(ValueError, match=message):
        lrpnb.load(path)


def test_a_numpy_scalar_with_a_long_run_of_spaces_parses_in_linear_time(tmp_path):
    # the former pattern backtracked cubically here (65 s for 4 KB)
    (tmp_path / "m.txt").write_text("Linear 1 1\nnp.float64(" + " " * 50_000 + "x\n0\n")
    with pytest.raises(ValueError, match=r"line 2: .*is not a number"):
        lrpnb.load(tmp_path / "m.txt")
    (tmp_path / "n.txt").write_text("Linear 1 1\nnp.float64(  0.5 )\nnumpy.float32(0.25)\n")
    net = lrpnb.load(tmp_path / "n.txt")
    assert net.layers[0].W[0, 0] == 0.5 and net.layers[0].B[0] == 0.25


# ---------------------------------------------------------------- pickles that try to hurt
def _toolbox_pickle(monkeypatch, W, lrp_param=1.0, stride=None):
    classes = _toolbox_modules(monkeypatch)
    layer = classes["Linear"]() if stride is None else classes["Convolution"]()
    layer.__dict__.update(W=W, B=[0.0], lrp_var="epsilon", lrp_param=lrp_param)
    if stride is not None:
        layer.stride = stride
    root = classes["Sequential"]()
    root.modules = [layer]
    return pickle.dumps(root, 2)


def _bomb(levels):
    """A pickle of a few bytes whose lists hold the list before them twice:
    2**levels values as a tree."""
    ops = bytearray(b"\x80\x02]q\x00")
    for level in range(1, levels):
        ops += b"(h" + bytes([level - 1]) + b"h" + bytes([level - 1]) + b"lq" + bytes([level])
    return bytes(ops + b".")


@pytest.mark.parametrize("make, message", [
    (lambda mp: _toolbox_pickle(mp, [[10 ** 400]]), "an integer beyond 64 bits"),
    (lambda mp: _toolbox_pickle(mp, [[1.0]], lrp_param=10 ** 400), "an integer beyond 64 bits"),
    (lambda mp: b"\x80\x02" + b"]" * 200_001 + b"a" * 200_000 + b".", "more than 64 levels deep"),
    (lambda mp: _bomb(60), "expands to more than"),
    (lambda mp: _toolbox_pickle(mp, np.ones((1, 1, 1, 1)), stride=list(range(20_000))), "stride must be"),
])
def test_hostile_pickles_are_a_short_value_error(tmp_path, monkeypatch, make, message):
    path = tmp_path / "hostile.nn"
    path.write_bytes(make(monkeypatch))
    with pytest.raises(ValueError, match=message) as caught:
        lrpnb.load(path)
    assert str(caught.value).startswith(str(path)) and len(str(caught.value)) < 1000


@pytest.mark.parametrize("flags", [1, 3, 63, 255])
def test_forged_dtype_flags_are_refused(tmp_path, flags):
    lrpnb.save(lrpnb.Network([lrpnb.Linear(np.ones((2, 2)), np.zeros(2))]), tmp_path / "m.nn")
    data = (tmp_path / "m.nn").read_bytes()
    normal = b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00"
    assert normal in data
    (tmp_path / "m.nn").write_bytes(data.replace(normal, normal[:-1] + bytes([flags])))
    with pytest.raises(ValueError, match="a forged dtype state"):
        lrpnb.load(tmp_path / "m.nn")


def test_onnx_without_the_onnx_package_names_the_extra(tmp_path, monkeypatch):
    import sys

    from lrpnb.cli import main

    path = tmp_path / "model.onnx"
    path.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r'needs the onnx package: pip install "lrpnb\[onnx\]"'):
        lrpnb.load(path)
    assert main(["info", str(path)]) == 1

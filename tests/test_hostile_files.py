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

"""What a result file records of how it was made, and reading it back.

Every result of ``lrpnb explain`` and ``lrpnb evaluate`` says which model
(its file and the SHA-256 of its bytes), which method and parameters, which
target, which input scaling and normalisation, which data, which lrpnb and
when. HDF5 results hold it as attributes of the file's root, one attribute
per field, readable by any HDF5 tool; the formats that have no room for it
(.npy, .npz, .mat, .txt) get a side-car ``OUT.provenance.json``, written
with the result under its lock. ``lrpnb info RESULT`` prints it
(:func:`read`). formats/README.md lists the fields.
"""
import datetime
import hashlib
import json
import os

import numpy as np

__all__ = ["FIELDS", "file_digest", "model_identity", "network_digest", "record", "sidecar_path", "write_sidecar", "write_attributes", "read",
           "describe"]

#: the fields of a record, in the order ``lrpnb info`` shows them
FIELDS = ("command", "lrpnb_version", "created", "model", "model_sha256", "weights", "weights_sha256", "method", "target", "class_names",
          "data", "dataset", "samples", "size", "images", "input_range", "mean", "std", "channel_order", "evaluation")

#: format tag of the side-car file
SIDECAR_FORMAT = "lrpnb provenance 1"


def file_digest(path):
    """The SHA-256 of a file's bytes (hex), read a block at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_identity(model, path):
    """(what to call the model, the SHA-256 of its file) for a model file
    (``path``) or a Network given in Python (``path`` None: named by the
    SHA-256 of its layers' descriptions and parameters)."""
    if path is not None:
        return os.path.abspath(path), file_digest(path)
    return ("a Network given in Python (model_sha256: of its layers and parameters)",
            network_digest(model, hashlib.sha256()))


def network_digest(net, digest):
    """``digest`` (a hashlib object) of a network's layers: each layer's
    description and its arrays, by name; returned as hex."""
    for layer in net.layers:
        digest.update(layer.describe().encode())
        for name, value in sorted(vars(layer).items()):
            if isinstance(value, np.ndarray):
                digest.update(name.encode())
                digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def record(command, **fields):
    """A record of ``fields`` (names of FIELDS; None values left out) with
    the lrpnb version and the time (UTC, ISO 8601) added."""
    from . import __version__

    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown provenance fields: {', '.join(sorted(unknown))}")
    made = dict(command=command, lrpnb_version=__version__,
                created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    made.update((key, _plain(value)) for key, value in fields.items() if value is not None)
    return {key: made[key] for key in FIELDS if key in made}


def _plain(value):
    """``value`` as JSON holds it (tuples and arrays as lists, numpy scalars as numbers)."""
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def sidecar_path(out):
    """The side-car file of a result that cannot hold its own record."""
    return os.fspath(out) + ".provenance.json"


def write_sidecar(out, made):
    """Write the record ``made`` of the result ``out`` beside it, atomically."""
    from ._atomic import atomic_path

    with atomic_path(sidecar_path(out), suffix=".json") as tmp, open(tmp, "w", encoding="utf-8") as handle:
        json.dump(dict(format=SIDECAR_FORMAT, result=os.path.basename(os.fspath(out)), **made), handle, indent=1)
        handle.write("\n")


def write_attributes(handle, made):
    """The record ``made`` as attributes of an open HDF5 file's root: text as
    strings, numbers and lists of numbers as numbers."""
    for key, value in made.items():
        if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
            handle.attrs[key] = np.asarray(value)
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            import h5py

            handle.attrs[key] = np.array(value, dtype=h5py.string_dtype())
        elif isinstance(value, (int, float, str)):
            handle.attrs[key] = value
        else:
            handle.attrs[key] = json.dumps(value)


def read(path):
    """The record of the result at ``path`` (a dict of FIELDS), or None if it
    has none: the attributes of an HDF5 result, else its side-car file.
    Raises ValueError naming the file when the record cannot be read."""
    from .data_io import check_regular

    path = os.fspath(path)
    if path.lower().endswith((".h5", ".hdf5")):
        import h5py

        check_regular(path, "the result")
        try:
            with h5py.File(path, "r") as handle:
                attrs = {key: handle.attrs[key] for key in FIELDS if key in handle.attrs}
        except (OSError, RuntimeError, KeyError, TypeError, ValueError, SystemError) as error:
            raise ValueError(f"{path}: cannot read its attributes ({error})") from None
        if "lrpnb_version" not in attrs:
            return None
        return {key: _from_attribute(value) for key, value in attrs.items()}
    side = sidecar_path(path)
    if not os.path.exists(side):
        return None
    check_regular(side, "the provenance file")
    if os.path.getsize(side) > 1 << 20:
        raise ValueError(f"{side}: too large for a provenance record ({os.path.getsize(side):,} bytes)")
    try:
        with open(side, encoding="utf-8") as handle:
            made = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{side}: not a readable provenance record ({error})") from None
    if not isinstance(made, dict) or made.get("format") != SIDECAR_FORMAT:
        raise ValueError(f"{side}: not an lrpnb provenance record (format {SIDECAR_FORMAT!r} expected)")
    return {key: made[key] for key in FIELDS if key in made}


def _from_attribute(value):
    """An HDF5 attribute's value as JSON would hold it."""
    if isinstance(value, np.ndarray):
        return [_from_attribute(v) for v in value.tolist()]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value.item() if isinstance(value, np.generic) else value


def describe(made):
    """The record as lines ``field: value`` (numbers of lists joined by spaces)."""
    from .network import printable

    lines = []
    for key in FIELDS:
        if key in made:
            value = made[key]
            if isinstance(value, list):
                text = (", " if any(isinstance(v, str) for v in value) else " ").join(map(str, value))
            else:
                text = json.dumps(value) if isinstance(value, dict) else str(value)
            lines.append(f"{key}: {printable(text)}")
    return lines

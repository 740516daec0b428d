"""The record of a run: what identifies its settings and inputs (compared
when a run resumes: :class:`lrpnb.writers.HDF5Writer`), and what its result
file says of how it was made (lrpnb.provenance)."""
import os

import numpy as np

from .. import provenance
from ..sources import LIST_EXTENSIONS
from .remote import absolute, is_url, local_file, model_identity, url_fingerprint, url_versions

__all__ = ["fingerprint", "listed", "target_words", "image_words", "provenance_record"]


def fingerprint(data, source, whole=(), edge=1 << 16):
    """What identifies the inputs' contents in the record of a run, so that a
    run is not resumed over data, a model or labels changed under the same
    name: the data file's size, modification time and a sha1 of its first
    and last 64 KiB; for images, also each image's size and modification
    time; the same as the data file's for each file of ``whole`` (None
    entries skipped)."""
    import hashlib

    digest = hashlib.sha1()
    paths = list(getattr(source, "paths", None) or ())
    if is_url(data):
        if not paths or os.path.splitext(data)[1].lower() in LIST_EXTENSIONS:
            url_fingerprint(data, digest, edge)  # a data file, or the list of the images
        url_versions(paths, digest)
        data = None
    if data is not None and not os.path.exists(data):  # FILE.h5:DATASET
        data = data.rpartition(":")[0] or data
    edged = [data] if data is not None and os.path.isfile(data) else []
    for path in whole:
        if is_url(path):
            url_fingerprint(path, digest, edge)
    edged += [path for path in whole if path is not None and not is_url(path) and os.path.isfile(path)]
    files = edged + [path for path in paths if not is_url(path)]
    for number, path in enumerate(files):
        try:
            status = os.stat(path)
        except OSError:  # an image that cannot be read is skipped, and so recorded
            digest.update(b"missing;")
            continue
        digest.update(f"{status.st_size} {status.st_mtime_ns};".encode())
        if number < len(edged):
            with open(path, "rb") as handle:
                digest.update(handle.read(edge))
                handle.seek(max(0, status.st_size - edge))
                digest.update(handle.read(edge))
    return digest.hexdigest()


def listed(values, kind):
    """Option values as the command line gives them (a list), for the record
    of a run's settings that resuming compares."""
    return None if values is None else [kind(v) for v in np.atleast_1d(values)]


def target_words(target):
    """A Target in the record of a run's settings; labels by a digest of their values."""
    if not target.per_sample:
        return target.describe()
    import hashlib

    values = np.ascontiguousarray(target.value, dtype=np.int64)
    return f"labels (sha1 {hashlib.sha1(values.tobytes()).hexdigest()})"


def image_words(size, resize):
    """How images were brought to the model's size, for the records of a
    run, when not squashed (the default, recorded by ``size`` alone)."""
    resized = f"shorter side resized to {resize}, then " if resize else ""
    return f"{resized}the centre {size[0]} x {size[1]} cut out" if size else f"{resized}the centre cut out"


def provenance_record(net, path, record, source, method_text, weights=None):
    """What the result file records of how it was made (lrpnb.provenance);
    ``weights``: a Caffe model's weights file."""
    model, digest = model_identity(net, path)
    return provenance.record("explain", model=model, model_sha256=digest, method=method_text,
                             weights=absolute(weights),
                             weights_sha256=None if weights is None else provenance.file_digest(local_file(weights)),
                             target=record["target"], data=record["data"], dataset=record["dataset"],
                             images=record.get("images"),
                             samples=len(source), size=record["size"], input_range=record["input_range"],
                             mean=record["mean"], std=record["std"], channel_order=record["channel_order"])

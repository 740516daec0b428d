"""Data and models named by a URL (``s3://``, ``gs://``, ``https://``, ``memory://``,
``file://``...), read through fsspec with whatever filesystems the user's
environment has (s3fs, gcsfs...): so that the workers of a Dask run read
their rows where the data lie, rather than through the scheduler.

A ``.npy`` file is read row by row (its header, then only the bytes of a
batch's rows); an HDF5 file (``URL.h5`` with ``dataset``, or
``URL.h5:NAME``) through h5py's file objects, which also read only what a
batch asks for. Images (a file, a folder of them, a list file) are read
whole, each when its batch comes. Other formats are read from paths only.
A model file (and a Caffe model's weights) named by a URL is copied once
per process into a temporary folder, under its own name (its extension
says its format), and read from there.
"""
import os

import numpy as np

__all__ = ["is_url", "absolute", "local_file", "model_identity", "open_data", "url_fingerprint", "url_versions"]

#: what a URL's data can be
URL_EXTENSIONS = (".npy", ".h5", ".hdf5")


def is_url(path):
    """Whether ``path`` is a URL (``PROTOCOL://...``) rather than a file path."""
    return isinstance(path, str) and "://" in path


def absolute(path):
    """A file named for another process (a Dask worker works in another
    folder): an absolute path, a URL as it is; None stays None."""
    if path is None:
        return None
    path = os.fspath(path)
    return path if is_url(path) else os.path.abspath(path)


#: URL -> the local copy of its file, in this process
_COPIES = {}


def local_file(path):
    """A path to read ``path`` from: itself, a ``file://`` URL's path, or
    another URL's file copied once per process (None stays None)."""
    if not is_url(path):
        return path
    fsspec = _fsspec(path)
    try:
        filesystem, where = fsspec.core.url_to_fs(path)
        if "file" in filesystem.protocol:
            return where
        if path not in _COPIES or not os.path.exists(_COPIES[path]):
            import tempfile

            target = os.path.join(tempfile.mkdtemp(prefix="lrpnb-"), os.path.basename(where))
            filesystem.get(where, target)
            _COPIES[path] = target
    except (OSError, ValueError, ImportError) as error:
        kind = FileNotFoundError if isinstance(error, FileNotFoundError) else OSError
        raise kind(f"{path}: cannot read ({type(error).__name__}: {error})") from None
    return _COPIES[path]


def model_identity(net, path):
    """lrpnb.provenance.model_identity, with a URL named as it is."""
    from ..provenance import model_identity as identity

    name, digest = identity(net, local_file(path))
    return (path if is_url(path) else name), digest


def _fsspec(url):
    try:
        import fsspec
    except ImportError:
        raise ImportError(f"{url}: reading data from a URL needs fsspec (it comes with dask): "
                          f"pip install fsspec, or 'lrpnb[distributed]'") from None
    return fsspec


def _split(url, dataset):
    """(the file's URL, the HDF5 dataset): ``URL.h5:NAME`` names the dataset."""
    base, _, suffix = url.rpartition(":")
    if os.path.splitext(base)[1].lower() in (".h5", ".hdf5") and "/" not in suffix:
        return base, suffix
    return url, dataset


def open_data(path, dataset=None, sample_shape=None, input_range=(-1.0, 1.0), resize=None, crop=False):
    """The sample source of ``path``: :func:`lrpnb.sources.open_source` for a
    path, a source reading a URL's ``.npy`` or HDF5 file through fsspec."""
    from ..sources import open_source

    if not is_url(path):
        return open_source(path, dataset, sample_shape, input_range, resize, crop)
    url, dataset = _split(path, dataset)
    extension = os.path.splitext(url)[1].lower()
    images = _image_urls(url, extension)
    if images is not None:
        from ..sources import ImageSource

        return ImageSource(images[0], sample_shape, input_range, images[1], resize=resize, crop=crop)
    if extension not in URL_EXTENSIONS:
        raise ValueError(f"{path}: data from a URL are read from {', '.join(URL_EXTENSIONS)} files, image files, "
                         f"folders of images and lists of images; copy the data to a path, or convert them to "
                         f".npy or .h5")
    fsspec = _fsspec(url)
    try:
        handle = fsspec.open(url, "rb").open()
    except (OSError, ValueError, ImportError) as error:
        # an unknown protocol (ValueError) or its missing package (ImportError) included
        kind = FileNotFoundError if isinstance(error, FileNotFoundError) else ValueError
        raise kind(f"{path}: cannot open ({type(error).__name__}: {error})") from None
    from ..sources import ArraySource

    if extension == ".npy":
        return ArraySource(_NpyRows(handle, url), url)
    return ArraySource(*_hdf5_dataset(handle, url, dataset))


def _image_urls(url, extension):
    """(image URLs, list line numbers or None) of an image file's, a folder's
    (its .png/.jpg/.jpeg files, sorted) or a list file's URL (a URL or a
    path relative to the list's folder per line, as ``sources.list_file``
    reads); None for other URLs."""
    from ..sources import IMAGE_EXTENSIONS, LIST_EXTENSIONS, list_lines

    if extension in IMAGE_EXTENSIONS:
        return [url], None
    fsspec = _fsspec(url)
    try:
        filesystem, where = fsspec.core.url_to_fs(url)
        if extension in LIST_EXTENSIONS:
            with filesystem.open(where, "rb") as handle:
                entries = list_lines(handle.read(), url)
            folder = url.rstrip("/").rpartition("/")[0]
            return [entry if is_url(entry) else f"{folder}/{entry}" for entry, _ in entries], \
                [line for _, line in entries]
        if not filesystem.isdir(where):
            return None
        files = sorted(f for f in filesystem.find(where, maxdepth=1)
                       if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
    except (OSError, ValueError, ImportError) as error:
        kind = FileNotFoundError if isinstance(error, FileNotFoundError) else ValueError
        raise kind(f"{url}: cannot read ({type(error).__name__}: {error})") from None
    if not files:
        raise ValueError(f"{url}: folder holds no {'/'.join(IMAGE_EXTENSIONS)} images")
    return [filesystem.unstrip_protocol(f) for f in files], None


class _NpyRows:
    """The rows of a ``.npy`` file read through a file object: its header
    once, then the bytes of the rows a slice asks for."""

    def __init__(self, handle, url):
        from numpy.lib import format as npy

        try:
            version = npy.read_magic(handle)
            header = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
            if header is None:
                raise ValueError(f"a header of version {version[0]}.{version[1]}, not 1.0 or 2.0")
            shape, fortran, dtype = header(handle)
        except ValueError as error:
            raise ValueError(f"{url}: not a .npy file ({error})") from None
        if fortran or dtype.hasobject:
            raise ValueError(f"{url}: a .npy file of C order and plain numbers is read from a URL")
        self.handle, self.url, self.shape, self.dtype = handle, url, tuple(shape), dtype
        self.ndim, self.offset = len(self.shape), handle.tell()
        self.row = int(np.prod(self.shape[1:], dtype=np.int64)) * dtype.itemsize

    def __len__(self):
        return self.shape[0] if self.shape else 0

    def __getitem__(self, rows):
        start, stop, _ = rows.indices(len(self))
        count = max(0, stop - start)
        self.handle.seek(self.offset + start * self.row)
        data = self.handle.read(count * self.row)
        if len(data) != count * self.row:
            raise ValueError(f"{self.url}: the file ends inside rows {start}..{stop - 1}")
        return np.frombuffer(data, dtype=self.dtype).reshape((count,) + self.shape[1:])


def _hdf5_dataset(handle, url, dataset):
    """(the h5py dataset, its name for messages) of ``dataset`` (the only one when None)."""
    import h5py

    try:
        opened = h5py.File(handle, "r")
        names = []
        opened.visititems(lambda key, item: names.append(key) if isinstance(item, h5py.Dataset) else None)
    except OSError as error:
        raise ValueError(f"{url}: not a readable HDF5 file ({error})") from None
    if dataset is None and len(names) != 1:
        raise ValueError(f"{url}: name the dataset to read (--dataset or {url}:NAME); it holds {names}")
    dataset = names[0] if dataset is None else dataset
    if dataset not in names:
        raise ValueError(f"{url}: no dataset {dataset!r} (found {names})")
    return opened[dataset], f"{url}:{dataset}"


def url_versions(urls, digest):
    """Feed ``digest`` with each URL's size and what its filesystem says of
    its version (the images of a run read from URLs); a URL that cannot be
    read counts as missing, as an image file that cannot be does."""
    if not urls:
        return
    fsspec = _fsspec(urls[0])
    for url in urls:
        try:
            filesystem, where = fsspec.core.url_to_fs(url)
            info = filesystem.info(where)
        except (OSError, ValueError):
            digest.update(b"missing;")
            continue
        version = [str(info.get(key)) for key in ("mtime", "LastModified", "ETag", "etag", "created") if key in info]
        digest.update(f"{int(info.get('size') or 0)} {' '.join(version)};".encode())


def url_fingerprint(url, digest, edge=1 << 16):
    """Feed ``digest`` with what identifies a URL's contents: its size, what
    its filesystem says of its version (modification time, ETag), and its
    first and last ``edge`` bytes."""
    url = _split(url, None)[0]
    fsspec = _fsspec(url)
    filesystem, where = fsspec.core.url_to_fs(url)
    info = filesystem.info(where)
    size = int(info.get("size") or 0)
    version = [str(info.get(key)) for key in ("mtime", "LastModified", "ETag", "etag", "created") if key in info]
    digest.update(f"{size} {' '.join(version)};".encode())
    with filesystem.open(where, "rb") as handle:
        digest.update(handle.read(edge))
        handle.seek(max(0, size - edge))
        digest.update(handle.read(edge))

"""Sample sources: data files, HDF5 datasets and images, read batch by batch.

:func:`open_source` picks the source for a path; every source has
``len()``, ``sample_shape``, ``name``, ``names`` (the file of each sample,
or None) and ``batch(start, stop)``. Images are loaded, resized and scaled
on the way (:func:`load_image`).
"""
import os

import numpy as np

from .data_io import check_array_size, check_hdf5_dataset, check_regular, read_data, reading_hdf5

__all__ = ["ArraySource", "HDF5Source", "ImageSource", "TokenSource", "open_source", "load_image", "list_file",
           "list_lines", "IMAGE_EXTENSIONS", "LIST_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_HDF5_EXTENSIONS = (".h5", ".hdf5")
LIST_EXTENSIONS = (".lst", ".list")


def load_image(path, size, channels, input_range, resize=None, crop=False):
    """One image file as an (H, W, channels) float32 array: converted to grey
    (1 channel) or RGB (3), brought to ``size`` (H, W) and scaled from
    0..255 to ``input_range``. Raises ValueError naming the file when it
    cannot be read.

    By default the image is resized to ``size`` whatever its aspect ratio
    (squashed). With ``crop``, as torchvision's ``Resize(resize)`` then
    ``CenterCrop(size)`` do: the shorter side is first resized to
    ``resize`` pixels (if given; the longer side in proportion, rounded
    down; bilinear), then the centre ``size`` is cut out (an image smaller
    than ``size`` is padded with black around it)."""
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise ValueError(f"images give 1 (grey) or 3 (RGB) channels; the model expects {channels}")
    try:
        if "://" in str(path):  # a URL (lrpnb.pipeline.remote): its bytes through fsspec
            import io

            import fsspec

            with fsspec.open(path, "rb") as handle:
                opened = io.BytesIO(handle.read())
        else:
            check_regular(path, "the image")
            opened = path
        with Image.open(opened) as picture:
            picture = picture.convert("L" if channels == 1 else "RGB")
            if crop:
                picture = _centre_crop(_resize_shorter(picture, resize) if resize else picture, size)
            elif size is not None and picture.size != (size[1], size[0]):
                picture = picture.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(picture, dtype=np.float32)
    except FileNotFoundError:
        raise ValueError(f"{path}: image not found") from None
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path}: refusing to decode the image ({error})") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot read the image ({error})") from None
    low, high = input_range
    pixels = pixels / np.float32(255) * np.float32(high - low) + np.float32(low)
    return pixels.reshape(pixels.shape[0], pixels.shape[1], channels)


def _resize_shorter(picture, side):
    """``picture`` with its shorter side resized to ``side`` pixels and the
    longer in proportion, rounded down (torchvision's ``Resize(side)``)."""
    from PIL import Image

    width, height = picture.size
    if width <= height:
        size = (side, max(1, int(side * height / width)))
    else:
        size = (max(1, int(side * width / height)), side)
    return picture if size == picture.size else picture.resize(size, Image.Resampling.BILINEAR)


def _centre_crop(picture, size):
    """The centre ``size`` (H, W) of ``picture``, padded with black where it
    is smaller (torchvision's ``CenterCrop``: offsets rounded to nearest)."""
    from PIL import Image

    height, width = size
    if picture.size[0] < width or picture.size[1] < height:
        padded = Image.new(picture.mode, (max(width, picture.size[0]), max(height, picture.size[1])))
        padded.paste(picture, ((padded.size[0] - picture.size[0]) // 2, (padded.size[1] - picture.size[1]) // 2))
        picture = padded
    top = int(round((picture.size[1] - height) / 2.0))
    left = int(round((picture.size[0] - width) / 2.0))
    return picture.crop((left, top, left + width, top + height))


class ArraySource:
    """Samples of an in-memory array (read from .npy, .npz, .mat, .txt)."""

    def __init__(self, data, name):
        if data.dtype.kind not in "biuf":
            raise ValueError(f"{name}: data must be numeric, got dtype {data.dtype}")
        if data.ndim < 2 or len(data) == 0:
            raise ValueError(f"{name}: holds no samples (shape {data.shape})")
        self.data, self.name = data, name
        self.names = None

    def __len__(self):
        return len(self.data)

    @property
    def sample_shape(self):
        return self.data.shape[1:]

    def batch(self, start, stop):
        """(samples, problems, kept) for samples start..stop-1: the samples
        that could be read, (index, message) for those that could not, and
        the indices of the ones read."""
        return self.data[start:stop], [], list(range(start, stop))


class HDF5Source(ArraySource):
    """Samples of a dataset in an HDF5 file, read batch by batch.

    The file is untrusted input read lazily: whatever h5py raises for
    damaged bytes, on opening, looking the dataset up or reading any batch,
    is a ValueError that starts with the file's path and names the dataset.
    """

    def __init__(self, path, dataset):
        import h5py

        check_regular(path, "the HDF5 file")
        with reading_hdf5(path, "the file as HDF5", "the file is damaged or not HDF5"):
            self._file = h5py.File(path, "r")
        try:
            self.data, self._dataset_name, self._shape = self._dataset(path, dataset)
        except BaseException:
            self._file.close()
            raise
        self.path, self.name, self.names = path, f"{path}:{self._dataset_name}", None

    def _dataset(self, path, dataset):
        """(h5py dataset, its name, its shape) of ``dataset`` in the open file
        (the only one when None), after the checks of its place, layout, size
        and type."""
        import h5py

        names = []
        with reading_hdf5(path, "the list of its datasets"):
            self._file.visititems(lambda key, item: names.append(key) if isinstance(item, h5py.Dataset) else None)
        if dataset is None:
            if len(names) != 1:
                raise ValueError(f"{path}: name the dataset to read (--dataset or {path}:NAME); "
                                 f"it holds {names}")
            dataset = names[0]
        if dataset not in names:
            raise ValueError(f"{path}: no dataset {dataset!r} (found {names})")
        with reading_hdf5(path, f"the dataset {dataset!r}"):
            data = self._file[dataset]
            shape, dtype = data.shape, data.dtype
        check_hdf5_dataset(data, f"{path}:{dataset}")
        # read in batches, so only the file's size bounds it (fill values and
        # compression make a few bytes of file declare any size)
        check_array_size(int(np.prod(shape, dtype=object)) * dtype.itemsize, f"{path}:{dataset}",
                         f"the dataset of shape {shape} and {dtype}", os.path.getsize(path), whole=False)
        if dtype.kind not in "biuf" or len(shape) < 2 or shape[0] == 0:
            raise ValueError(f"{path}:{dataset}: needs a numeric (N, ...) dataset, got {dtype} {shape}")
        return data, dataset, shape

    def __len__(self):
        return self._shape[0]

    @property
    def sample_shape(self):
        return self._shape[1:]

    def batch(self, start, stop):
        with reading_hdf5(self.path, f"samples {start}..{stop - 1} of the dataset {self._dataset_name!r}"):
            samples = np.asarray(self.data[start:stop])
        return samples, [], list(range(start, stop))

    def has_dataset(self, name):
        """Whether the file holds a dataset ``name`` besides the one read."""
        import h5py

        with reading_hdf5(self.path, "the list of its datasets"):
            return name != self._dataset_name and isinstance(self._file.get(name), h5py.Dataset)


class TokenSource:
    """Token ids (N, T) of integers, with an attention mask (N, T) of 0 and 1
    from a second source or all ones: each batch is a dict {ids_name: ids,
    mask_name: mask} (the ids first), as a network with several inputs
    takes it. ``mask_name`` None: the ids alone."""

    def __init__(self, ids, mask, ids_name, mask_name):
        data = getattr(ids, "data", None)
        if data is None or data.dtype.kind not in "iu" or len(ids.sample_shape) != 1:
            raise ValueError(f"{ids.name}: token ids must be integers (N, T), got "
                             f"{getattr(data, 'dtype', 'images')} of sample shape {tuple(ids.sample_shape)}")
        if mask is not None and (len(mask) != len(ids) or tuple(mask.sample_shape) != tuple(ids.sample_shape)):
            raise ValueError(f"{mask.name}: the attention mask must have the token ids' shape "
                             f"{(len(ids),) + tuple(ids.sample_shape)}, got {(len(mask),) + tuple(mask.sample_shape)}")
        if mask is not None and mask.data.dtype.kind not in "biuf":
            raise ValueError(f"{mask.name}: the attention mask must be numeric 0 and 1, got {mask.data.dtype}")
        self.ids, self.mask, self.ids_name, self.mask_name = ids, mask, ids_name, mask_name
        self.name, self.names, self.data = ids.name, None, data

    def __len__(self):
        return len(self.ids)

    @property
    def sample_shape(self):
        return tuple(self.ids.sample_shape)

    def batch(self, start, stop):
        ids, _, kept = self.ids.batch(start, stop)
        batch = {self.ids_name: np.ascontiguousarray(ids)}
        if self.mask_name is not None:
            mask = np.ones(ids.shape, np.int64) if self.mask is None else np.asarray(self.mask.batch(start, stop)[0])
            bad = np.flatnonzero(~np.isin(mask, (0, 1)).all(axis=1))
            if len(bad):
                raise ValueError(f"{self.mask.name}: sample {start + bad[0]}: the attention mask holds values "
                                 f"other than 0 and 1")
            batch[self.mask_name] = np.ascontiguousarray(mask)
        return batch, [], kept


class ImageSource:
    """Image files (a folder's .png/.jpg/.jpeg files, or the paths in a list
    file), loaded batch by batch. An image that cannot be read is reported
    with its file (and list line) and left out."""

    def __init__(self, paths, sample_shape, input_range, lines=None, resize=None, crop=False):
        self.resize, self.crop = resize, crop  # how images are brought to sample_shape: see load_image
        if sample_shape is None or len(sample_shape) != 3:
            raise ValueError("images need a model that takes images (H, W, C), or --size")
        self.paths, self.lines = list(paths), lines
        if not self.paths:
            raise ValueError("no images to explain")
        self.sample_shape, self.input_range = tuple(sample_shape), input_range
        self.names = [os.path.basename(p) for p in self.paths]
        self.name = "images"
        self._check_size(1)

    def _check_size(self, count):
        """Refuse a batch of ``count`` images resized to sample_shape beyond
        the size limit of lrpnb.data_io (a clear error, not a MemoryError)."""
        H, W, C = (int(n) for n in self.sample_shape)
        check_array_size(count * H * W * C * 4, "images", f"a batch of {count} of {H} x {W} x {C} float32")

    def __len__(self):
        return len(self.paths)

    def batch(self, start, stop):
        self._check_size(stop - start)
        samples, problems, kept = [], [], []
        for k in range(start, stop):
            try:
                samples.append(load_image(self.paths[k], self.sample_shape[:2], self.sample_shape[2],
                                          self.input_range, self.resize, self.crop))
                kept.append(k)
            except ValueError as error:
                where = f" (line {self.lines[k]})" if self.lines else ""
                problems.append((k, f"{error}{where}"))
        data = np.stack(samples) if samples else np.zeros((0,) + self.sample_shape, np.float32)
        return data, problems, kept


def list_lines(data, name):
    """[(entry, line number)] of a list file's bytes ``data``: the first word
    of each line; blank lines and lines starting with # are skipped;
    anything after the path (a toolbox target) is ignored."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{name}: the list is not UTF-8 text ({error})") from None
    return [(line.split()[0], number) for number, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.strip().startswith("#")]


def list_file(path):
    """(image paths, line numbers) of a list file: a path per line, relative
    to the list's folder (see :func:`list_lines`)."""
    folder = os.path.dirname(os.path.abspath(path))
    check_regular(path, "the list file")
    with open(path, "rb") as handle:
        entries = list_lines(handle.read(), path)
    return [os.path.join(folder, entry) for entry, _ in entries], [line for _, line in entries]


def open_source(path, dataset=None, sample_shape=None, input_range=(-1.0, 1.0), resize=None, crop=False):
    """The sample source for ``path``: a folder of images, a list file
    (.lst/.list) of images, an HDF5 file (.h5/.hdf5, with ``dataset`` or
    ``FILE.h5:NAME``) or a data file (.npy, .npz, .mat, .txt). Images are
    brought to ``sample_shape`` as :func:`load_image` says (``resize``, ``crop``)."""
    images = dict(resize=resize, crop=crop)
    path = os.fspath(path)
    base, _, suffix = path.rpartition(":")
    if base and os.path.splitext(base)[1].lower() in _HDF5_EXTENSIONS and not os.path.exists(path):
        path, dataset = base, suffix
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(f"{path}: folder holds no {'/'.join(IMAGE_EXTENSIONS)} images")
        return ImageSource([os.path.join(path, f) for f in files], sample_shape, input_range, **images)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext in LIST_EXTENSIONS:
        paths, lines = list_file(path)
        if not paths:
            raise ValueError(f"{path}: the list names no images")
        return ImageSource(paths, sample_shape, input_range, lines, **images)
    if ext in IMAGE_EXTENSIONS:
        return ImageSource([path], sample_shape, input_range, **images)
    if ext in _HDF5_EXTENSIONS:
        return HDF5Source(path, dataset)
    # .npy files are mapped, not read: a batch reads its rows only
    return ArraySource(read_data(path, mmap=path.lower().endswith(".npy")), path)


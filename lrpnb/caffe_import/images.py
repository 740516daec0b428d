"""Images as the Caffe LRP Toolbox's batch program feeds them to a Caffe network.

Its demonstrator (``heatmapcomp_nogui_filelist``) resizes an image so that
its longer side is ``baseimgsize`` pixels (the aspect ratio kept), scales
its pixels to 0..255, cuts the network's input size out of the centre (a
shorter side than the input is widened by repeating its edge pixels),
subtracts the same cut of the mean image, and gives the network BGR.
"""
import numpy as np

__all__ = ["toolbox_image", "mean_image"]


def _fit(array, size, axis):
    """``array`` cut to ``size`` along ``axis`` from the centre, or widened to it by repeating its edges."""
    length = array.shape[axis]
    if length >= size:
        start = (length - size) // 2
        return np.take(array, np.arange(start, start + size), axis=axis)
    pad = [(0, 0)] * array.ndim
    pad[axis] = ((size - length) // 2, size - length - (size - length) // 2)
    return np.pad(array, pad, mode="edge")


def mean_image(path, order="bgr"):
    """A Caffe mean file (.binaryproto) as float32 (H, W, 3) in BGR; ``order`` the file's channel order
    (the toolbox's use_mean_file_asbinaryprotoblob: 1 BGR, 2 RGB)."""
    from . import read_mean_file

    mean = read_mean_file(path)
    if mean.shape[2] != 3:
        raise ValueError(f"{path}: a mean image of {mean.shape[2]} channels; the toolbox's networks take 3")
    return mean if order == "bgr" else mean[..., ::-1]


def toolbox_image(path, shape, base_size=None, mean=None):
    """(the network's input (H, W, 3): BGR 0..255 less the mean, the image as cut out: RGB 0..255) of the
    image file ``path`` for a network of input ``shape`` (H, W, 3); ``base_size``: the longer side after
    resizing (default: the input's longer side); ``mean``: a mean image (BGR), cut as the image is."""
    from ..sources import load_image

    height, width = shape[:2]
    base_size = base_size or max(height, width)
    if base_size < max(height, width):
        raise ValueError(f"baseimgsize {base_size} is smaller than the network's input {height} x {width}")
    rows, columns = load_image(path, None, 3, (0.0, 255.0)).shape[:2]
    scale = base_size / max(rows, columns)
    size = (max(1, int(round(rows * scale))), max(1, int(round(columns * scale))))
    image = load_image(path, size, 3, (0.0, 255.0))
    cut = _fit(_fit(image, height, 0), width, 1)
    X = cut[..., ::-1].astype(np.float32)
    if mean is not None:
        if mean.shape[0] < height or mean.shape[1] < width:
            raise ValueError(f"the mean image {mean.shape[0]} x {mean.shape[1]} is smaller than the network's "
                             f"input {height} x {width}")
        # where the image is narrower than the input, the toolbox takes the mean's first rows or columns
        # (not its centre) and repeats their edges as it does the image's
        mean = mean[:size[0]] if size[0] < height else mean
        mean = mean[:, :size[1]] if size[1] < width else mean
        X = X - _fit(_fit(mean, height, 0), width, 1)
    return np.ascontiguousarray(X, dtype=np.float32), cut

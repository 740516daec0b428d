"""Synthetic handwriting-like digits, drawn from the fonts matplotlib ships.

lrpnb cannot ship MNIST, so its demo model learns from digits it draws
itself: the glyphs 0-9 of the DejaVu fonts in matplotlib's data folder
(Sans, Sans Mono and Serif, in their regular, bold, oblique and italic
faces), each at a random position, height, rotation, slant and stroke width,
with pixel noise. Images look like the LRP Toolbox's MNIST input: 28x28,
white digit on black, scaled to [-1, 1] and padded to 32x32 with -1.

Each digit comes with its ink mask (the pixels the glyph covers at least
half), so that tests can ask whether an explanation points at the digit.
Everything is seeded; nothing is downloaded.
"""
import functools
import os
from typing import NamedTuple

import numpy as np

__all__ = ["Digits", "synthetic_digits", "augmenter", "mnist_images", "FONTS"]

#: the font files used (in matplotlib's ``fonts/ttf`` folder)
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
         "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
         "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf",
         "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf")

#: side of the square the glyphs are first drawn in; a glyph is 48 pixels tall there
_BANK_SIZE, _GLYPH_HEIGHT = 64, 48
#: stroke width changes, in pixels of the 64-pixel drawing (about 0.4 px at 28x28 each)
_STROKES = (-2, -1, 0, 1, 2, 3)


class Digits(NamedTuple):
    """A batch of synthetic digits."""

    images: np.ndarray  #: (N, 32, 32, 1) in [-1, 1] (or (N, 28, 28, 1) unpadded)
    labels: np.ndarray  #: (N,) int64, the digit drawn
    masks: np.ndarray   #: (N, 32, 32) bool: the glyph's ink (or (N, 28, 28))


def _rasterize(path, size, supersample=4):
    """Coverage (0..1) of a glyph's outline on a size x size grid, by the
    even-odd rule: a point is ink when it lies inside an odd number of the
    outline's closed curves (so the hole of an 8 stays open)."""
    from matplotlib.path import Path

    n = size * supersample
    centres = (np.arange(n) + 0.5) / supersample
    xx, yy = np.meshgrid(centres, centres)
    points = np.column_stack([xx.ravel(), yy.ravel()])
    inside = np.zeros(len(points), dtype=bool)
    for polygon in path.to_polygons(closed_only=True):
        inside ^= Path(polygon).contains_points(points)
    return inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


def _components(mask, disk):
    """(pieces of ink, pieces of background wider than about 7 pixels): the
    glyph's topology, as far as it survives drawing at 28x28."""
    from scipy import ndimage

    return ndimage.label(mask)[1], ndimage.label(~ndimage.binary_dilation(mask, disk[3]))[1]


def _restroke(ink, stroke, disk):
    """The glyph ``ink`` with strokes widened (stroke > 0) or thinned by up to
    ``|stroke|`` pixels: as far as the glyph keeps its topology, so no hole
    of a 0, 6, 8 or 9 closes and no stroke breaks."""
    from scipy import ndimage

    topology = _components(ink, disk)
    for radius in range(abs(stroke), 0, -1):
        if stroke > 0:
            shape = ndimage.binary_dilation(ink, disk[radius])
        else:
            shape = ndimage.binary_erosion(ink, disk[radius])
        if _components(shape, disk) == topology:
            return shape
    return ink


@functools.lru_cache(maxsize=1)
def _glyph_bank():
    """(fonts * 10 digits, strokes, 64, 64) float32: every glyph, centred,
    48 px tall, at every stroke width, smoothed for sampling down to 28x28."""
    import matplotlib
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath
    from matplotlib.transforms import Affine2D
    from scipy import ndimage

    folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    disk = {r: np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= r + 0.3 for r in range(1, 4)}
    bank = np.empty((len(FONTS) * 10, len(_STROKES), _BANK_SIZE, _BANK_SIZE), np.float32)
    for f, font in enumerate(FONTS):
        prop = FontProperties(fname=os.path.join(folder, font))
        for digit in range(10):
            path = TextPath((0, 0), str(digit), size=1, prop=prop)
            (x0, y0), (x1, y1) = path.get_extents().get_points()
            scale = _GLYPH_HEIGHT / (y1 - y0)
            # centre the glyph and flip y: image rows grow downwards
            placed = path.transformed(Affine2D().translate(-(x0 + x1) / 2, -(y0 + y1) / 2)
                                      .scale(scale, -scale).translate(_BANK_SIZE / 2, _BANK_SIZE / 2))
            ink = _rasterize(placed, _BANK_SIZE) >= 0.5
            for s, stroke in enumerate(_STROKES):
                shape = _restroke(ink, stroke, disk)
                bank[f * 10 + digit, s] = ndimage.gaussian_filter(shape.astype(np.float32), 1.0)
    return bank


def synthetic_digits(count, seed=0, pad=True, noise=0.08, dtype=np.float32, height=(14, 22),
                     aspect=(0.7, 1.4), slant=0.5, rotation=15, shift=2.5, bend=3.0):
    """Draw ``count`` random digits.

    Parameters
    ----------
    count : int
        How many digits; their labels are uniform over 0..9.
    seed : int
        Seeds everything: the same seed gives the same digits.
    pad : bool
        Pad the 28x28 images to 32x32 with -1 (the toolbox's LeNet-5 input).
    noise : float
        Upper bound of the Gaussian pixel noise's standard deviation (each
        image draws its own from [0, noise]), on the [-1, 1] scale.
    dtype : numpy float dtype of the images.
    height : (low, high)
        Glyph height in pixels of the 28x28 image.
    aspect : (low, high)
        Width factor (handwriting is narrower or wider than a font).
    slant, rotation : float
        Largest slant (x shift per unit of height) and rotation (degrees).
    shift : float
        Largest move of the glyph's centre from the image centre, in pixels.
    bend : float
        Largest smooth random displacement (elastic distortion as in Simard
        et al., ICDAR 2003), in pixels.

    Returns
    -------
    Digits(images (N, 32, 32, 1), labels (N,), masks (N, 32, 32)); 28 instead
    of 32 without ``pad``.

    Each digit is one font's glyph at a height, width, rotation, slant,
    position and bend drawn uniformly from the ranges above, with its stroke
    width changed by up to -0.8 or +1.3 pixels (as far as no hole closes and
    no stroke breaks).
    """
    from scipy import ndimage

    if not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count must be an integer >= 0, got {count!r}")
    bank = _glyph_bank()
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=count)
    fonts = rng.integers(0, len(FONTS), size=count)
    strokes = rng.integers(0, len(_STROKES), size=count)
    heights = rng.uniform(height[0], height[1], size=count)
    angles = np.radians(rng.uniform(-rotation, rotation, size=count))
    slants = rng.uniform(-slant, slant, size=count)
    shifts = rng.uniform(-shift, shift, size=(count, 2))
    sigmas = rng.uniform(0, noise, size=count)
    warps = rng.uniform(0, bend, size=count)
    widths = rng.uniform(aspect[0], aspect[1], size=count)
    fields = rng.uniform(-1, 1, size=(count, 2, 28, 28))
    coverage = np.empty((count, 28, 28), np.float32)
    centre_in, centre_out = (_BANK_SIZE - 1) / 2, 13.5
    grid = np.mgrid[0:28, 0:28].reshape(2, -1).astype(np.float64)
    for n in range(count):
        scale = heights[n] / _GLYPH_HEIGHT
        cos, sin = np.cos(angles[n]), np.sin(angles[n])
        # output (row, col) = centre + shift + scale * rotation @ slant @ (input - centre),
        # then bent by a smooth random displacement (elastic distortion as in
        # Simard et al., ICDAR 2003) of up to warps[n] pixels
        forward = scale * np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, 0.0], [-slants[n], 1.0]]) \
            @ np.diag([1.0, widths[n]])
        field = ndimage.gaussian_filter(fields[n], sigma=(0, 4, 4))
        field *= warps[n] / max(np.abs(field).max(), 1e-12)
        points = grid + field.reshape(2, -1) - (centre_out + shifts[n])[:, None]
        source = np.linalg.solve(forward, points) + centre_in
        coverage[n] = ndimage.map_coordinates(bank[fonts[n] * 10 + labels[n], strokes[n]], source,
                                              order=1).reshape(28, 28)
    images = 2 * np.clip(coverage, 0, 1) - 1
    images += sigmas[:, None, None] * rng.standard_normal(images.shape).astype(np.float32)
    images = np.clip(images, -1, 1).astype(dtype)
    masks = coverage >= 0.5
    if pad:
        images = np.pad(images, ((0, 0), (2, 2), (2, 2)), constant_values=-1)
        masks = np.pad(masks, ((0, 0), (2, 2), (2, 2)))
    return Digits(images[..., None], labels.astype(np.int64), masks)


def augmenter(seed=0, noise=0.3, salt=0.03, shift=3):
    """A ``transform`` for ``Network.train`` that makes the background an
    unreliable cue: each image of a batch (in [-1, 1], background -1) gets
    Gaussian noise of a standard deviation drawn from [0, noise], a share
    drawn from [0, salt] of its pixels set to 1 (white specks), and a shift
    by up to ``shift`` pixels in each direction (filled with -1).

    Without it, a LeNet-5 trained on the clean font digits learns much from
    where the ink is *not* (LRP-epsilon put 29% of the positive relevance
    on the ink, against 40% with it, 18% of the image being ink).
    """
    rng = np.random.default_rng(seed)

    def transform(X):
        N = len(X)
        sigma = rng.uniform(0, noise, size=(N,) + (1,) * (X.ndim - 1))
        X = X + (sigma * rng.standard_normal(X.shape)).astype(X.dtype)
        X[rng.random(X.shape) < rng.uniform(0, salt, size=(N,) + (1,) * (X.ndim - 1))] = 1
        X = np.clip(X, -1, 1)
        out = np.full_like(X, -1)
        H, W = X.shape[1:3]
        for n, (dy, dx) in enumerate(rng.integers(-shift, shift + 1, size=(N, 2))):
            part = X[n, max(0, -dy):H - max(0, dy), max(0, -dx):W - max(0, dx)]
            out[n, max(0, dy):max(0, dy) + part.shape[0], max(0, dx):max(0, dx) + part.shape[1]] = part
        return out

    return transform


def mnist_images(pixels, size=32, input_range=(-1.0, 1.0), dtype=np.float32, pixel_range=(0, 255)):
    """The LRP Toolbox's MNIST input from its data files.

    ``pixels`` are (N, side * side) grey values in ``pixel_range``
    (``test_images.mat`` holds 10,000 x 784 values 0..255); they become
    (N, size, size, 1) images scaled linearly to ``input_range`` and padded
    evenly with its low end (the toolbox's LeNet-5: 28 x 28 digits in
    [-1, 1] padded with -1 to 32 x 32). Values already in ``input_range``
    pass ``pixel_range=input_range`` and are only reshaped and padded.
    """
    pixels = np.asarray(pixels)
    side = int(round(np.sqrt(pixels.shape[-1]))) if pixels.ndim == 2 else -1
    if side * side != pixels.shape[-1] or size < side or (size - side) % 2:
        raise ValueError(f"expected rows of side x side pixels, side <= {size} and of the same "
                         f"parity, got shape {pixels.shape}")
    low, high = input_range
    images = (pixels.reshape(len(pixels), side, side, 1) - pixel_range[0]) \
        / dtype((pixel_range[1] - pixel_range[0]) / (high - low)) + dtype(low)
    pad = (size - side) // 2
    return np.pad(images.astype(dtype, copy=False), ((0, 0), (pad, pad), (pad, pad), (0, 0)),
                  constant_values=low)

"""Heatmaps and input images as RGB pictures, and PNG files of them.

Relevance maps become colours through a matplotlib colormap, scaled
symmetrically around 0 by default: the largest |R| maps to the ends of the
colormap and R = 0 to its middle (white for the default 'bwr'). Besides every
matplotlib colormap, the LRP Toolbox's own ones are available by name
('gray-red', 'gray-red2', 'black-green', 'black-firered',
'blue-black-yellow'; colours as in the toolbox's ``render.py``, Lapuschkin et
al., JMLR 17(114), 2016), and :func:`register_colormap` adds more.

All pictures are uint8 RGB arrays of shape (H, W, 3), or (N, H, W, 3) for a
batch.
"""
import os

import numpy as np

from ._atomic import atomic_path

__all__ = ["heatmap", "image", "compose", "grid", "save_image", "register_colormap",
           "colormap", "colorbar", "labelled", "relevance_colours", "COLORMAPS", "PANEL_PIXELS"]

#: the shorter side, in pixels, that :func:`labelled` enlarges every panel to
#: at least (a 32 x 32 digit becomes 128 x 128): small enough maps to see
PANEL_PIXELS = 128

#: height in pixels of the caption strip above a panel
CAPTION_PIXELS = 18


# The toolbox's colour maps, as functions of the scaled relevance
# t in [-1, 1] (negative relevance t < 0); each returns (..., 3) in [0, 1].
def _gray_red(t):
    base = 0.8
    rgb = np.full(t.shape + (3,), base)
    neg, pos = np.minimum(t, 0), np.maximum(t, 0)
    rgb[..., 0] += neg * base + pos * (1 - base)
    rgb[..., 1] += neg * base - pos * base
    rgb[..., 2] += -neg * (1 - base) - pos * base
    return rgb


def _ramp(x, start, width):
    """0 below ``start``, rising linearly to 1 at ``start + width``."""
    return np.clip(x - start, 0, width) / width


def _gray_red2(t):
    pos, neg = np.maximum(t, 0), np.maximum(-t, 0)
    rp = 0.9 - _ramp(pos, 0.3, 0.7) * 0.5
    gp = 0.9 - _ramp(pos, 0.0, 0.3) * 0.5 - _ramp(pos, 0.3, 0.7) * 0.4
    rn = 0.9 - _ramp(neg, 0.0, 0.3) * 0.5 - _ramp(neg, 0.3, 0.7) * 0.4
    bn = 0.9 - _ramp(neg, 0.3, 0.7) * 0.5
    positive = t >= 0
    return np.stack([np.where(positive, rp, rn), np.where(positive, gp, rn),
                     np.where(positive, gp, bn)], axis=-1)


def _black_green(t):
    return np.stack([np.zeros_like(t), np.maximum(t, 0), np.maximum(-t, 0)], axis=-1)


def _black_firered(t):
    return np.stack([_ramp(t, 0, 0.25) + _ramp(-t, 0.5, 0.5),
                     _ramp(t, 0.25, 0.25) + _ramp(-t, 0.25, 0.25),
                     _ramp(t, 0.5, 0.5) + _ramp(-t, 0, 0.25)], axis=-1)


def _blue_black_yellow(t):
    pos = np.maximum(t, 0)
    return np.stack([pos, pos, np.maximum(-t, 0)], axis=-1)


_TOOLBOX_MAPS = {"gray-red": _gray_red, "gray-red2": _gray_red2, "black-green": _black_green,
                 "black-firered": _black_firered, "blue-black-yellow": _blue_black_yellow}

#: colormaps known by name besides matplotlib's (the toolbox's and registered ones)
COLORMAPS = {}


def _listed(name, function, size=257):
    from matplotlib.colors import ListedColormap

    t = np.linspace(-1, 1, size)
    return ListedColormap(np.clip(function(t), 0, 1), name=name)


def register_colormap(name, colors):
    """Make a colormap from a list of colours (low to high) known as ``name``.

    ``colors`` are anything matplotlib accepts as a colour ('navy', '#ff0000',
    (r, g, b) in [0, 1]); they are spaced evenly, the middle one at R = 0
    under symmetric scaling. Returns the matplotlib colormap.
    """
    from matplotlib.colors import LinearSegmentedColormap

    if not isinstance(name, str) or not name:
        raise ValueError(f"a colormap needs a non-empty name, got {name!r}")
    colors = list(colors)
    if len(colors) < 2:
        raise ValueError(f"colormap {name!r} needs at least 2 colours, got {len(colors)}")
    try:
        cmap = LinearSegmentedColormap.from_list(name, colors)
    except ValueError as error:
        raise ValueError(f"colormap {name!r}: {error}") from None
    COLORMAPS[name] = cmap
    return cmap


def colormap(name):
    """The colormap called ``name``: one of COLORMAPS, the toolbox's, or matplotlib's."""
    import matplotlib

    if not isinstance(name, str):
        if hasattr(name, "N") and callable(name):
            return name  # a matplotlib Colormap object
        raise ValueError(f"colormap must be a name or a matplotlib colormap, got {name!r}")
    if name in COLORMAPS:
        return COLORMAPS[name]
    if name in _TOOLBOX_MAPS:
        COLORMAPS[name] = _listed(name, _TOOLBOX_MAPS[name])
        return COLORMAPS[name]
    try:
        return matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"unknown colormap {name!r}: use a matplotlib colormap name, one of the "
                         f"toolbox's ({', '.join(_TOOLBOX_MAPS)}) or register_colormap()") from None


def _odd(cmap):
    """``cmap`` with an odd number of colours, so that R = 0 (the value 0.5)
    gets the colour exactly in its middle (white for 'bwr', not a pale red)."""
    from matplotlib.colors import LinearSegmentedColormap

    if cmap.N % 2 == 0 and isinstance(cmap, LinearSegmentedColormap):
        return cmap.resampled(cmap.N + 1)
    return cmap


def _batch(array, what, channels_allowed=True):
    """(float64 array (N, H, W[, C]), whether the input was a single picture).

    (H, W) and (H, W, 1|3) are one picture (a sample as it comes out of a
    batch), (N, H, W) and (N, H, W, C) a batch."""
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numeric, got dtype {array.dtype}")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3) and channels_allowed):
        return array[None].astype(np.float64), True
    if array.ndim == 3 or (array.ndim == 4 and channels_allowed):
        return array.astype(np.float64), False
    raise ValueError(f"{what} must be (H, W), a batch (N, H, W) or (N, H, W, C), got shape {array.shape}")


def _enlarge(pictures, factor):
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"enlarge must be an integer >= 1, got {factor!r}")
    if factor == 1:
        return pictures
    return np.repeat(np.repeat(pictures, factor, axis=1), factor, axis=2)


def _to_uint8(rgb):
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def relevance_colours(values, cmap="bwr", limit=None):
    """(uint8 RGB (..., 3), the limit used): ``values`` coloured as
    :func:`heatmap` colours a map, symmetrically around 0: ``limit`` (default
    their largest |value|; all zero: 1) maps to the colormap's top end, 0 to
    its middle and -limit to its bottom end."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("the relevance contains NaN or infinite values")
    if limit is None:
        limit = float(np.abs(values).max()) if values.size else 0.0
        limit = limit if limit > 0 else 1.0
    elif not (np.isfinite(limit) and limit > 0):
        raise ValueError(f"the colour scale's limit must be a positive number, got {limit!r}")
    t = (np.clip(values / limit, -1, 1) + 1) / 2
    return _to_uint8(_odd(colormap(cmap))(t)[..., :3]), float(limit)


def heatmap(R, cmap="bwr", scale="sample", symmetric=True, sigma=None, enlarge=1):
    r"""Relevance maps as RGB pictures.

    Each map is reduced to (H, W) by summing its channels, optionally
    smoothed with a Gaussian of standard deviation ``sigma`` pixels, scaled
    to :math:`t = R / \max|R|` in [-1, 1] (``symmetric``) and coloured with
    ``cmap`` at :math:`(t + 1) / 2`.

    Parameters
    ----------
    R : array (H, W), (H, W, C), (N, H, W) or (N, H, W, C)
        One map (C 1 or 3), or a batch (channels last are summed first).
    cmap : str or matplotlib colormap
        Default 'bwr': positive relevance red, negative blue, zero white.
    scale : 'sample', 'shared' or float
        The :math:`\max|R|` each map is divided by: its own, the largest over
        the batch, or the given value.
    symmetric : bool
        False maps each map's [min, max] to the colormap's ends instead.
    sigma : float, optional
        Gaussian smoothing before scaling.
    enlarge : int
        Each pixel becomes an enlarge x enlarge block (no interpolation).

    Returns
    -------
    uint8 array (H', W', 3), or (N, H', W', 3) for a batch.
    """
    maps, single = _batch(R, "R")
    if maps.ndim == 4:
        maps = maps.sum(axis=3)
    if not np.isfinite(maps).all():
        raise ValueError("R contains NaN or infinite values")
    if sigma is not None:
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma!r}")
        from scipy.ndimage import gaussian_filter
        maps = gaussian_filter(maps, sigma=(0, sigma, sigma))
    if symmetric:
        if isinstance(scale, str):
            if scale not in ("sample", "shared"):
                raise ValueError(f"scale must be 'sample', 'shared' or a positive number, got {scale!r}")
            limit = np.abs(maps).max(axis=(1, 2), keepdims=True)
            if scale == "shared":
                limit = np.full_like(limit, limit.max())
        else:
            if not (isinstance(scale, (int, float, np.floating, np.integer)) and scale > 0):
                raise ValueError(f"scale must be 'sample', 'shared' or a positive number, got {scale!r}")
            limit = np.full((len(maps), 1, 1), float(scale))
        # an all-zero map stays at the colormap's middle
        t = (np.clip(maps / np.where(limit > 0, limit, 1), -1, 1) + 1) / 2
    else:
        low = maps.min(axis=(1, 2), keepdims=True)
        high = maps.max(axis=(1, 2), keepdims=True)
        if scale == "shared":
            low, high = np.full_like(low, low.min()), np.full_like(high, high.max())
        span = high - low
        t = (maps - low) / np.where(span > 0, span, 1)
    rgb = _to_uint8(_odd(colormap(cmap))(t)[..., :3])
    rgb = _enlarge(rgb, enlarge)
    return rgb[0] if single else rgb


def image(X, input_range=(-1.0, 1.0), enlarge=1):
    """Input samples as RGB pictures: grey for one channel, RGB for three.

    Values are mapped from ``input_range`` (low, high) to black..white and
    clipped. ``X`` is one picture (H, W) or (H, W, 1|3), or a batch (N, H, W)
    or (N, H, W, 1|3) (as in :func:`heatmap`). Returns uint8 (H', W', 3) or
    (N, H', W', 3).
    """
    pictures, single = _batch(X, "X")
    low, high = input_range
    if not high > low:
        raise ValueError(f"input_range must be (low, high) with high > low, got {input_range!r}")
    if not np.isfinite(pictures).all():
        raise ValueError("X contains NaN or infinite values")
    scaled = (pictures - low) / (high - low)
    if scaled.ndim == 3:
        scaled = scaled[..., None]
    if scaled.shape[-1] == 1:
        scaled = np.repeat(scaled, 3, axis=-1)
    elif scaled.shape[-1] != 3:
        raise ValueError(f"X must have 1 or 3 channels to be drawn, got {scaled.shape[-1]}")
    rgb = _enlarge(_to_uint8(scaled), enlarge)
    return rgb[0] if single else rgb


def compose(X, R, layout="beside", alpha=0.6, input_range=(-1.0, 1.0), **heatmap_options):
    """The input and its heatmap in one picture per sample.

    ``layout='beside'`` puts the input left of the heatmap, ``'under'`` the
    heatmap under the input (one line of white between them);
    ``'overlay'`` blends the heatmap over the input with opacity ``alpha``.
    Other keywords go to :func:`heatmap` (the same ``enlarge`` is used for
    the input). Shapes as in :func:`heatmap`.
    """
    enlarge = heatmap_options.get("enlarge", 1)
    heat = heatmap(R, **heatmap_options)
    picture = image(X, input_range=input_range, enlarge=enlarge)
    if picture.shape[-3:] != heat.shape[-3:] or picture.ndim != heat.ndim:
        raise ValueError(f"X draws as {picture.shape} but R as {heat.shape}; they must match")
    if layout == "overlay":
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
        return np.round(alpha * heat + (1 - alpha) * picture.astype(np.float64)).astype(np.uint8)
    if layout not in ("beside", "under"):
        raise ValueError(f"layout must be 'beside', 'under' or 'overlay', got {layout!r}")
    axis = -2 if layout == "beside" else -3  # columns, or rows
    gap_shape = list(picture.shape)
    gap_shape[axis] = 1
    gap = np.full(gap_shape, 255, np.uint8)
    return np.concatenate([picture, gap, heat], axis=axis)


def _font(size):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1, or without FreeType: the bitmap font
        return ImageFont.load_default()


def _text_strip(width, height, lines, anchor="mm"):
    """A white (height, width, 3) picture with ``lines`` [(y, text)] in black,
    each shortened with '...' until it fits the width."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(strip)
    font = _font(max(8, min(CAPTION_PIXELS - 6, height - 4)))
    for y, text in lines:
        shown = text
        while shown and draw.textlength(shown, font=font) > width - 2:
            text = text[:-1]
            shown = text + "..."
        x = width / 2 if anchor == "mm" else 1
        draw.text((x, y), shown, fill="black", font=font, anchor=anchor)
    return np.asarray(strip)


def colorbar(height, cmap="bwr", limit=1.0, width=12, labels=48):
    """A vertical colour scale: the colour of relevance +limit at the top, 0
    in the middle and -limit at the bottom (as :func:`heatmap` colours with
    ``scale=limit``), labelled on its right in a strip ``labels`` pixels wide.

    Returns uint8 (height, width + labels, 3).
    """
    if not isinstance(height, (int, np.integer)) or height < 8:
        raise ValueError(f"height must be an integer >= 8, got {height!r}")
    t = np.linspace(1.0, 0.0, height)
    colours = _to_uint8(_odd(colormap(cmap))(t)[..., :3])
    bar = np.repeat(colours[:, None, :], width, axis=1)
    bar[[0, -1], :] = 0  # a thin frame, so that a white end still shows
    bar[:, [0, -1]] = 0
    text = _text_strip(labels, height, [(6, _scale_label(limit)), (height / 2, "0"),
                                        (height - 7, _scale_label(-limit))], anchor="lm")
    return np.concatenate([bar, text], axis=1)


def _scale_label(value):
    """``value`` in at most 7 characters, for the colour bar's narrow strip:
    +0.0012, +1.2e-5 (not +0.000123 cut to +0.00...)."""
    candidates = [f"{value:+.3g}", f"{value:+.0f}" if 1 <= abs(value) < 1e5 else "", f"{value:+.2g}"]
    for digits in (1, 0):
        mantissa, exponent = f"{value:+.{digits}e}".split("e")
        candidates.append(f"{mantissa}e{int(exponent)}")
    return next((text for text in candidates if 0 < len(text) <= 7), candidates[-1])


def labelled(x, maps, captions, cmap="bwr", input_range=(-1.0, 1.0), panel=PANEL_PIXELS):
    """One sample as a labelled picture: the input, then each of its relevance
    maps, every panel enlarged (whole pixels) to at least ``panel`` pixels on
    its shorter side with its caption above, and a colour bar of the maps'
    common scale (their largest |R|, summed over channels) on the right.

    Parameters
    ----------
    x : array (H, W, C)
        The input sample.
    maps : array (H, W, C) or (T, H, W, C)
        Its relevance map(s).
    captions : sequence of str
        One per panel: the input's first, then one per map.
    """
    x = np.asarray(x)
    maps = np.asarray(maps)
    maps = maps[None] if maps.ndim == x.ndim else maps
    if x.ndim != 3 or maps.shape[1:] != x.shape:
        raise ValueError(f"x must be one sample (H, W, C) and maps (H, W, C) or (T, H, W, C) of its shape, "
                         f"got {x.shape} and {maps.shape}")
    if len(captions) != len(maps) + 1:
        raise ValueError(f"give {len(maps) + 1} captions (the input's, then one per map), got {len(captions)}")
    enlarge = max(1, -(-int(panel) // min(x.shape[0], x.shape[1])))
    limit = float(np.abs(maps.astype(np.float64).sum(axis=-1)).max())
    heat = heatmap(maps, cmap=cmap, scale=limit if limit > 0 else 1.0, enlarge=enlarge)
    pictures = [image(x[None], input_range=input_range, enlarge=enlarge)[0]] + list(heat)
    height, width = pictures[0].shape[:2]
    gap = np.full((CAPTION_PIXELS + height, 4, 3), 255, np.uint8)
    columns = []
    for picture, caption in zip(pictures, captions):
        columns += [np.concatenate([_text_strip(width, CAPTION_PIXELS, [(CAPTION_PIXELS / 2, caption)]),
                                    picture]), gap]
    bar = colorbar(height, cmap, limit if limit > 0 else 1.0)
    columns.append(np.concatenate([np.full((CAPTION_PIXELS, bar.shape[1], 3), 255, np.uint8), bar]))
    return np.concatenate(columns, axis=1)


def grid(images, columns=None, border=2, color=(255, 255, 255)):
    """Pictures tiled into one, ``columns`` per row, ``border`` pixels between
    and around them (in ``color``).

    ``images`` is a sequence (or array (N, H, W, 3)) of uint8 RGB pictures, or
    grey (H, W) ones; all the same size. ``columns=None`` puts all in one row.
    """
    pictures = [np.asarray(p) for p in images]
    if not pictures:
        raise ValueError("grid() needs at least one picture")
    for k, p in enumerate(pictures):
        if p.ndim == 2:
            pictures[k] = p = np.repeat(p[..., None], 3, axis=2)
        if p.ndim != 3 or p.shape[2] != 3:
            raise ValueError(f"picture {k} must be (H, W, 3) or (H, W), got shape {p.shape}")
        if p.dtype != np.uint8:
            raise ValueError(f"picture {k} must be uint8 (use heatmap() or image()), got {p.dtype}")
        if p.shape != pictures[0].shape:
            raise ValueError(f"picture {k} has shape {p.shape}, picture 0 {pictures[0].shape}; "
                             f"all must be the same size")
    if not isinstance(border, (int, np.integer)) or border < 0:
        raise ValueError(f"border must be an integer >= 0, got {border!r}")
    columns = len(pictures) if columns is None else columns
    if not isinstance(columns, (int, np.integer)) or columns < 1:
        raise ValueError(f"columns must be an integer >= 1, got {columns!r}")
    rows = -(-len(pictures) // columns)
    h, w, _ = pictures[0].shape
    out = np.empty((rows * (h + border) + border, columns * (w + border) + border, 3), np.uint8)
    out[...] = np.asarray(color, np.uint8)
    for k, p in enumerate(pictures):
        top = border + (k // columns) * (h + border)
        left = border + (k % columns) * (w + border)
        out[top:top + h, left:left + w] = p
    return out


def save_image(images, path, columns=None, border=2, color=(255, 255, 255)):
    """Write pictures side by side (or as a grid of ``columns``) to a PNG file.

    ``images`` is one picture or a sequence of them (see :func:`grid`). The
    file is written atomically: it appears complete or not at all.
    Returns the path.
    """
    from PIL import Image

    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"{path}: save_image writes PNG files; give a path ending in .png")
    if isinstance(images, np.ndarray) and images.ndim in (2, 3):
        images = [images]  # one picture
    picture = grid(images, columns=columns, border=border, color=color)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
    return path

"""Text heatmaps: tokens coloured by their relevance, as HTML or PNG.

The relevance of a sequence (one row of the (N, T) token relevance that
``Network.explain`` and ``lrpnb explain`` give for token inputs) colours its
tokens as :func:`lrpnb.render.heatmap` colours pixels: symmetrically around
0, the largest |R| at the colormap's ends and R = 0 at its middle (white for
the default 'bwr'). The tokens are the strings of the user's tokenizer
(Hugging Face ``tokenizers`` / ``transformers``: ``tokenizer.convert_ids_to_tokens(ids)``);
their sub-word markers are shown as text reads:

- WordPiece (BERT): '##ing' continues the word before it;
- byte-level BPE (GPT-2): 'Ġ' is a space before the token, 'Ċ' a line
  break, and the other byte characters are decoded to text;
- SentencePiece (LLaMA, T5): '▁' is a space before the token, '<0x0A>' a
  line break.
"""
import html
import os
import warnings
from collections import namedtuple

import numpy as np

from ._atomic import atomic_path
from .render import colormap, relevance_colours

__all__ = ["text_heatmap", "text_html", "text_picture", "token_pieces", "SUBWORD_SCHEMES", "LINE_PIXELS",
           "MARGIN_PIXELS", "CAPTION_PIXELS", "BAR_PIXELS"]

#: how sub-word markers are read ('auto': from the tokens themselves)
SUBWORD_SCHEMES = ("auto", "wordpiece", "bytes", "sentencepiece", "words")

#: the PNG's geometry at the default font size 14: each line of tokens, the
#: margin around everything, the caption line and the colour bar with its labels
LINE_PIXELS = 28
MARGIN_PIXELS = 12
CAPTION_PIXELS = 30
BAR_PIXELS = 44

#: a token as shown: a space before it, its text, a line break after it
Piece = namedtuple("Piece", "space text newline")

#: what a token whose text is only white space is shown as
_BLANK = "\u2423"
_NEWLINE = "\u21b5"


def _byte_decoder():
    """GPT-2's byte-level alphabet reversed: the character that stands for each byte -> the byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) \
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    characters = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return {chr(character): byte for byte, character in zip(printable, characters)}


_BYTES = _byte_decoder()


def _scheme(tokens):
    """The sub-word scheme the tokens are written in."""
    if any(token.startswith("\u2581") for token in tokens):
        return "sentencepiece"
    if any(("\u0120" in token or "\u010a" in token) and all(c in _BYTES for c in token) for token in tokens):
        return "bytes"
    return "wordpiece"


def _piece(token, scheme):
    """One token as a Piece under ``scheme``."""
    if scheme == "wordpiece" and token.startswith("##") and len(token) > 2:
        return Piece(False, token[2:], False)
    if scheme in ("wordpiece", "words"):
        return Piece(True, token, False)
    if scheme == "sentencepiece":
        if token == "<0x0A>":
            return Piece(False, _NEWLINE, True)
        space = token.startswith("\u2581")
        return Piece(space, (token[1:] if space else token).replace("\u2581", " "), False)
    text = token
    if all(c in _BYTES for c in token):
        text = bytes(_BYTES[c] for c in token).decode("utf-8", errors="replace")
    space = text.startswith(" ")
    text = text[1:] if space else text
    return Piece(space, text.replace("\n", _NEWLINE).replace("\t", " "), "\n" in text)


def token_pieces(tokens, subwords="auto"):
    """The tokens as they are shown: a list of ``Piece(space, text, newline)``.

    Parameters
    ----------
    tokens : sequence of str
        A tokenizer's token strings.
    subwords : str
        One of SUBWORD_SCHEMES: 'wordpiece' ('##' continues a word; other
        tokens are words, a space between them), 'bytes' (GPT-2's byte-level
        BPE: 'Ġ' a space, the bytes decoded), 'sentencepiece' ('▁' a space),
        'words' (a space between all tokens), or 'auto' (SentencePiece if a
        token starts with '▁', bytes if one holds 'Ġ' or 'Ċ', else WordPiece).

    Returns
    -------
    list of Piece
        No space before the first token; a token of white space alone is
        shown as '␣', a line break as '↵' (with the line broken after it).
    """
    tokens = list(tokens)
    bad = next((k for k, token in enumerate(tokens) if not isinstance(token, str)), None)
    if bad is not None:
        raise ValueError(f"token {bad} is {tokens[bad]!r}, not a string: give the tokenizer's token strings "
                         f"(tokenizer.convert_ids_to_tokens(ids)), not the ids")
    if subwords not in SUBWORD_SCHEMES:
        raise ValueError(f"subwords must be one of {', '.join(SUBWORD_SCHEMES)}, got {subwords!r}")
    scheme = _scheme(tokens) if subwords == "auto" else subwords
    pieces = []
    for k, token in enumerate(tokens):
        space, text, newline = _piece(token, scheme)
        text = text if text.strip() else (_BLANK if not newline else text)
        pieces.append(Piece(space and k > 0 and not (pieces and pieces[-1].newline), text, newline))
    return pieces


def _checked(tokens, relevance, mask):
    """(tokens, float64 relevance) of one sequence, the masked-out tokens dropped."""
    tokens = list(tokens)
    relevance = np.asarray(relevance)
    if relevance.dtype.kind not in "biuf" or relevance.ndim != 1:
        raise ValueError(f"relevance must be one sequence's values (T,), got {relevance.dtype} of shape "
                         f"{relevance.shape}; for a batch's (N, T) relevance draw each row with its tokens")
    if len(tokens) != len(relevance):
        raise ValueError(f"{len(tokens)} tokens but {len(relevance)} relevance values: give one value per token "
                         f"(the row of the (N, T) relevance that belongs to these tokens, padding included)")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != relevance.shape:
            raise ValueError(f"mask must have one value per token ({len(tokens)}), got shape {mask.shape}")
        kept = np.flatnonzero(mask)
        tokens, relevance = [tokens[k] for k in kept], relevance[kept]
    return tokens, relevance.astype(np.float64)


def _caption(prediction, target):
    """The line over the tokens: the prediction and the class explained."""
    parts = []
    if prediction is not None:
        parts.append(f"prediction: {prediction}")
    if target is not None:
        parts.append(f"explained: {target}")
    return " \u00b7 ".join(parts)


def _hex(rgb):
    return "#%02x%02x%02x" % tuple(int(v) for v in rgb)


def _ink(rgb):
    """Black text on light colours, white on dark ones."""
    red, green, blue = (float(v) / 255 for v in rgb)
    return "#000000" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "#ffffff"


_STYLE = ("body{font-family:sans-serif;margin:1.5em;max-width:60em}"
          ".caption{font-weight:bold}"
          ".tokens{line-height:2.1;font-size:16px}"
          ".tokens span{padding:0.15em 0.1em;border-radius:0.2em;white-space:pre}"
          ".bar{display:flex;align-items:center;gap:0.5em;margin-top:1em;font-size:13px}"
          ".scale{display:inline-block;width:16em;height:1em;border:1px solid #000}")


def text_html(tokens, relevance, prediction=None, target=None, mask=None, cmap="bwr", limit=None,
              subwords="auto", title="lrpnb relevance"):
    """One sequence's tokens coloured by relevance, as a self-contained HTML page (a str).

    Every token's text, its tooltip (the token as the tokenizer wrote it and
    its relevance), the caption and the title are HTML-escaped. Parameters
    as in :func:`text_heatmap`.
    """
    tokens, relevance = _checked(tokens, relevance, mask)
    pieces = token_pieces(tokens, subwords)
    colours, limit = relevance_colours(relevance, cmap, limit)
    spans = []
    for token, piece, value, rgb in zip(tokens, pieces, relevance, colours):
        tip = html.escape(f"{token} {value:+.4g}", quote=True)
        spans.append(("&#32;" if piece.space else "")
                     + f'<span style="background:{_hex(rgb)};color:{_ink(rgb)}" title="{tip}">'
                     + html.escape(piece.text, quote=True) + "</span>" + ("<br>" if piece.newline else ""))
    stops, _ = relevance_colours(np.linspace(-limit, limit, 11), cmap, limit)
    gradient = ", ".join(_hex(rgb) for rgb in stops)
    caption = _caption(prediction, target)
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(str(title), quote=True)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + (f'<p class="caption">{html.escape(caption, quote=True)}</p>\n' if caption else "")
            + f'<div class="tokens">{"".join(spans)}</div>\n'
            + f'<div class="bar"><span>{-limit:+.3g}</span><span class="scale" '
            + f'style="background:linear-gradient(to right, {gradient})"></span><span>{limit:+.3g}</span>'
            + "<span>(relevance; 0 in the middle)</span></div>\n</body></html>\n")


def _measure(dpi, font_size):
    """A function giving a text's width in pixels at ``font_size`` points."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer, font = RendererAgg(64, 64, dpi), FontProperties(size=font_size)
    return lambda text: renderer.get_text_width_height_descent(text, font, ismath=False)[0]


def _layout(pieces, width, font_size, dpi):
    """(line, x, box width, text shown) of each piece: greedy lines ``width`` pixels wide."""
    measure = _measure(dpi, font_size)
    scale = font_size / 14
    # words apart by a wide space, the pieces of a word close together
    space, pad = measure("  "), 1.5 * scale
    right = width - MARGIN_PIXELS
    placed, line, x = [], 0, MARGIN_PIXELS
    for k, piece in enumerate(pieces):
        text = piece.text
        box = measure(text) + 2 * pad
        while box > right - MARGIN_PIXELS and len(text) > 1:  # a token wider than a line is shortened
            text = text[:-2] + "\u2026"
            box = measure(text) + 2 * pad
        start = x + (space if piece.space else 0)
        if start + box > right and x > MARGIN_PIXELS:
            line, start = line + 1, MARGIN_PIXELS
        placed.append((line, start, box, text))
        x = start + box
        if piece.newline and k + 1 < len(pieces):
            line, x = line + 1, MARGIN_PIXELS
    return placed


def text_picture(tokens, relevance, prediction=None, target=None, mask=None, cmap="bwr", limit=None,
                 subwords="auto", width=800, font_size=14, dpi=100):
    """One sequence's tokens coloured by relevance, as a picture: uint8 (H, W, 3).

    The tokens are laid out in lines ``width`` pixels wide; the caption
    (prediction, class explained) above them and a horizontal colour bar
    under them. At the default ``font_size`` 14 the height is
    ``2 * MARGIN_PIXELS + CAPTION_PIXELS (with a caption) + lines * LINE_PIXELS
    + BAR_PIXELS`` (these scale with the font size). Parameters as in
    :func:`text_heatmap`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if not isinstance(width, (int, np.integer)) or width < 200:
        raise ValueError(f"width must be an integer >= 200 pixels, got {width!r}")
    if not 4 <= font_size <= 72:
        raise ValueError(f"font_size must lie in 4..72 points, got {font_size!r}")
    tokens, relevance = _checked(tokens, relevance, mask)
    colours, limit = relevance_colours(relevance, cmap, limit)
    scale = font_size / 14
    line_px, caption_px, bar_px = (round(n * scale) for n in (LINE_PIXELS, CAPTION_PIXELS, BAR_PIXELS))
    placed = _layout(token_pieces(tokens, subwords), width, font_size, dpi)
    caption = _caption(prediction, target)
    top = MARGIN_PIXELS + (caption_px if caption else 0)
    lines = placed[-1][0] + 1 if placed else 1
    height = top + lines * line_px + bar_px + MARGIN_PIXELS
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, width)
    axes.set_ylim(height, 0)
    axes.axis("off")
    if caption:
        measure = _measure(dpi, font_size * 1.1)  # bold is about a tenth wider
        while len(caption) > 1 and measure(caption) > width - 2 * MARGIN_PIXELS:
            caption = caption[:-2] + "\u2026"
        axes.text(width / 2, MARGIN_PIXELS + caption_px / 2, caption, ha="center", va="center",
                  fontsize=font_size, fontweight="bold", parse_math=False, clip_on=True)
    for (line, x, box, text), rgb in zip(placed, colours):
        y = top + line * line_px
        axes.add_patch(Rectangle((x, y + 2 * scale), box, line_px - 4 * scale, facecolor=rgb / 255, linewidth=0))
        axes.text(x + box / 2, y + line_px / 2, text, ha="center", va="center_baseline", fontsize=font_size,
                  color=_ink(rgb), parse_math=False)
    bar_top = top + lines * line_px + 6 * scale
    bar = figure.add_axes((0.25, 1 - (bar_top + 12 * scale) / height, 0.5, 12 * scale / height))
    figure.colorbar(ScalarMappable(Normalize(-limit, limit), colormap(cmap)), cax=bar, orientation="horizontal")
    bar.set_xticks([-limit, 0, limit], [f"{-limit:+.3g}", "0", f"{limit:+.3g}"])
    bar.tick_params(labelsize=max(6, font_size - 4), length=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # glyphs the font lacks are drawn as boxes
        canvas.draw()
    picture = np.asarray(canvas.buffer_rgba())[..., :3]
    return np.ascontiguousarray(picture[:height, :width])


def text_heatmap(tokens, relevance, path, prediction=None, target=None, mask=None, cmap="bwr", limit=None,
                 subwords="auto", **picture_options):
    """Write one sequence's tokens coloured by relevance to ``path``: HTML or PNG by its suffix.

    Parameters
    ----------
    tokens : sequence of str
        The tokenizer's token strings of the sequence (special and padding
        tokens included, as the model saw them).
    relevance : array (T,)
        One value per token: a row of the (N, T) token relevance.
    path : str or path-like
        .html/.htm: a self-contained page (:func:`text_html`); .png: a
        picture (:func:`text_picture`). Written atomically.
    prediction, target : str, optional
        The model's prediction and the class explained, shown above the tokens.
    mask : array (T,), optional
        The attention mask: tokens where it is 0 (padding) are left out.
    cmap : str or matplotlib colormap
        As in :func:`lrpnb.render.heatmap` (default 'bwr': positive red, negative blue).
    limit : float, optional
        The |relevance| at the colormap's ends (default the sequence's largest),
        to draw several sequences on one scale.
    subwords : str
        How sub-word markers are read (:func:`token_pieces`).
    **picture_options
        ``width``, ``font_size``, ``dpi`` of :func:`text_picture` (PNG only).

    Returns
    -------
    str
        The path written.
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".html", ".htm"):
        if picture_options:
            raise ValueError(f"{path}: {', '.join(picture_options)} apply to PNG pictures, not to HTML")
        text = text_html(tokens, relevance, prediction, target, mask, cmap, limit, subwords)
        with atomic_path(path, suffix=suffix) as tmp, open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path
    if suffix != ".png":
        raise ValueError(f"{path}: text heatmaps are written as .html/.htm or .png; give a path ending in one")
    from PIL import Image

    picture = text_picture(tokens, relevance, prediction, target, mask, cmap, limit, subwords, **picture_options)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
    return path

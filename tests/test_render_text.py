"""Text heatmaps (lrpnb.render_text): tokens coloured by relevance as HTML and PNG."""
import re

import numpy as np
import pytest
from PIL import Image

from lrpnb import render_text
from lrpnb.render_text import (BAR_PIXELS, CAPTION_PIXELS, LINE_PIXELS, MARGIN_PIXELS, text_heatmap, text_html,
                               text_picture, token_pieces)

TOKENS = ["[CLS]", "the", "film", "was", "un", "##believ", "##ably", "good", "[SEP]"]
RELEVANCE = np.array([0.0, 0.1, 0.5, -0.2, 0.3, 0.3, 0.1, 1.0, -0.5])


def _span_colours(page):
    """(background '#rrggbb', shown text) of every token span of a page."""
    return re.findall(r'<span style="background:(#[0-9a-f]{6});color:#[0-9a-f]{6}" title="[^"]*">([^<]*)</span>',
                      page)


def test_html_escapes_hostile_token_text(tmp_path):
    hostile = ['<script>alert("x")</script>', '" onmouseover="alert(1)', "a&b", "</div><img src=x onerror=y>"]
    path = text_heatmap(hostile, [1.0, -1.0, 0.5, 0.0], tmp_path / "page.html",
                        prediction="<b>bold</b>", target='"quoted"')
    page = open(path, encoding="utf-8").read()
    assert "<script" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&quot; onmouseover=&quot;alert(1)" in page
    assert "a&amp;b" in page
    assert "prediction: &lt;b&gt;bold&lt;/b&gt;" in page and "explained: &quot;quoted&quot;" in page
    # every token is one span whose attributes the hostile text did not break
    assert len(_span_colours(page)) == 4


def test_html_colours_follow_the_sign():
    spans = _span_colours(text_html(["up", "down", "zero"], [2.0, -1.0, 0.0]))
    (up, _), (down, _), (zero, _) = spans
    red, blue = (int(up[1:3], 16), int(up[5:7], 16)), (int(down[1:3], 16), int(down[5:7], 16))
    assert up == "#ff0000"  # the largest |R| is the colormap's end: pure red in 'bwr'
    assert red[0] > red[1] and blue[1] > blue[0]  # positive red, negative blue
    assert down not in ("#0000ff", "#ffffff")  # -1 of a scale to 2: half way to blue
    assert zero == "#ffffff"


def test_html_limit_puts_sequences_on_one_scale():
    spans = _span_colours(text_html(["a", "b"], [1.0, -1.0], limit=4.0))
    assert spans[0][0] not in ("#ff0000", "#ffffff") and spans[1][0] not in ("#0000ff", "#ffffff")


def test_mask_leaves_padding_out():
    spans = _span_colours(text_html(["hi", "there", "[PAD]", "[PAD]"], [1.0, 0.5, 0.0, 0.0], mask=[1, 1, 0, 0]))
    assert [text for _, text in spans] == ["hi", "there"]


def test_lengths_must_agree(tmp_path):
    with pytest.raises(ValueError, match="3 tokens but 4 relevance values"):
        text_heatmap(["a", "b", "c"], np.zeros(4), tmp_path / "x.html")
    with pytest.raises(ValueError, match=r"one sequence's values \(T,\)"):
        text_html(["a", "b"], np.zeros((1, 2)))
    with pytest.raises(ValueError, match="not a string"):
        text_html([101, 2023], np.zeros(2))
    with pytest.raises(ValueError, match="mask must have one value per token"):
        text_html(["a", "b"], np.zeros(2), mask=[1, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        text_html(["a", "b"], [np.nan, 0.0])
    assert not list(tmp_path.iterdir())


def test_suffix_chooses_the_format(tmp_path):
    with pytest.raises(ValueError, match=r"x\.txt: text heatmaps are written as \.html/\.htm or \.png"):
        text_heatmap(["a"], [1.0], tmp_path / "x.txt")
    with pytest.raises(ValueError, match="apply to PNG"):
        text_heatmap(["a"], [1.0], tmp_path / "x.html", width=300)


def test_png_is_written_with_the_expected_size(tmp_path):
    path = text_heatmap(TOKENS, RELEVANCE, tmp_path / "heat.png", prediction="positive", target="positive")
    with Image.open(path) as picture:
        assert picture.size == (800, 2 * MARGIN_PIXELS + CAPTION_PIXELS + LINE_PIXELS + BAR_PIXELS)
        pixels = np.asarray(picture.convert("RGB"))
    # the most relevant token's box is the colormap's red end
    assert (np.all(pixels == [255, 0, 0], axis=-1)).sum() > 100
    # without a caption, narrower and with more lines
    long = text_picture(TOKENS * 12, np.tile(RELEVANCE, 12), width=300)
    lines = (long.shape[0] - 2 * MARGIN_PIXELS - BAR_PIXELS) / LINE_PIXELS
    assert long.shape[1] == 300 and lines == int(lines) and lines > 5


def test_png_draws_dollar_signs_as_text():
    # matplotlib would read "$x$" as mathematics, and fail on an odd "$"
    picture = text_picture(["$", "x$", "$\\frac{"], [1.0, -1.0, 0.5])
    assert picture.dtype == np.uint8 and picture.shape[2] == 3


@pytest.mark.parametrize("tokens, shown", [
    (["[CLS]", "un", "##believ", "##ably", "!"], [(False, "[CLS]"), (True, "un"), (False, "believ"),
                                                  (False, "ably"), (True, "!")]),
    (["Hello", "\u0120world", "\u010a", "\u0120caf", "\u00c3\u00a9"], [(False, "Hello"), (True, "world"),
                                                                      (False, "\u21b5"), (False, "caf"),
                                                                      (False, "\u00e9")]),
    (["<s>", "\u2581Hello", "\u2581wor", "ld", "<0x0A>", "\u2581x"], [(False, "<s>"), (True, "Hello"),
                                                                     (True, "wor"), (False, "ld"),
                                                                     (False, "\u21b5"), (False, "x")]),
])
def test_subword_markers_are_read(tokens, shown):
    pieces = token_pieces(tokens)
    assert [(piece.space, piece.text) for piece in pieces] == shown
    assert [piece.newline for piece in pieces] == [piece.text == "\u21b5" for piece in pieces]


def test_subword_scheme_can_be_named():
    assert [p.text for p in token_pieces(["##a", "b"], subwords="words")] == ["##a", "b"]
    assert token_pieces(["\u0120"], subwords="bytes")[0].text == "\u2423"  # a space alone stays visible
    with pytest.raises(ValueError, match="subwords must be one of"):
        token_pieces(["a"], subwords="bpe2")
    assert "text_heatmap" in render_text.__all__

"""Rendering: colours at chosen pixels, shapes and dtypes, files."""
import numpy as np
import pytest
from PIL import Image

from lrpnb import render


def peaks():
    R = np.zeros((5, 6))
    R[1, 2] = 3.0
    R[3, 4] = -1.5
    return R


def test_bwr_positive_red_negative_blue_zero_white():
    rgb = render.heatmap(peaks())
    assert rgb.shape == (5, 6, 3) and rgb.dtype == np.uint8
    red, blue, white = rgb[1, 2], rgb[3, 4], rgb[0, 0]
    assert red[0] > 150 and red[1] < 20 and red[2] < 20      # the largest |R|: full red
    assert blue[2] > 150 and blue[0] < 200 and blue[0] == blue[1]  # half as strong: light blue
    assert tuple(white) == (255, 255, 255)


def test_symmetric_scaling_per_sample_and_shared():
    R = np.stack([peaks(), 10 * peaks()])
    own = render.heatmap(R)
    assert own.shape == (2, 5, 6, 3)
    assert np.array_equal(own[0], own[1])           # each scaled by its own max|R|
    shared = render.heatmap(R, scale="shared")
    assert np.array_equal(shared[1], own[1])
    assert shared[0, 1, 2, 1] > 200                 # one tenth of the shared maximum: pale
    fixed = render.heatmap(peaks(), scale=30.0)
    assert np.array_equal(fixed, shared[0])


def test_channels_summed_enlarge_and_smoothing():
    R = np.zeros((1, 4, 4, 3))
    R[0, 1, 1] = (1.0, -0.5, 0.5)                   # sums to 1
    rgb = render.heatmap(R, enlarge=3)
    assert rgb.shape == (1, 12, 12, 3)
    assert np.array_equal(rgb[0, 3:6, 3:6], np.broadcast_to(rgb[0, 3, 3], (3, 3, 3)))
    assert rgb[0, 3, 3, 0] > 150 and rgb[0, 3, 3, 2] < 20
    smooth = render.heatmap(R, sigma=1.0)
    assert smooth[0, 1, 2, 1] < 250                 # relevance spread to the neighbour


def test_all_zero_map_is_white():
    assert (render.heatmap(np.zeros((3, 3))) == 255).all()


def test_toolbox_and_registered_colormaps():
    R = peaks()
    black_green = render.heatmap(R, cmap="black-green")
    assert tuple(black_green[0, 0]) == (0, 0, 0)
    assert black_green[1, 2, 1] == 255 and black_green[3, 4, 2] > 100
    gray_red = render.heatmap(R, cmap="gray-red")
    assert tuple(gray_red[0, 0]) == (204, 204, 204)
    for name in ("gray-red2", "black-firered", "blue-black-yellow", "viridis"):
        assert render.heatmap(R, cmap=name).shape == (5, 6, 3)
    render.register_colormap("green-white-purple", ["green", "white", "purple"])
    custom = render.heatmap(R, cmap="green-white-purple")
    assert tuple(custom[0, 0]) == (255, 255, 255) and custom[3, 4, 1] > custom[3, 4, 0]
    with pytest.raises(ValueError, match="unknown colormap 'no-such-map'"):
        render.heatmap(R, cmap="no-such-map")
    with pytest.raises(ValueError, match="at least 2 colours"):
        render.register_colormap("one", ["red"])


def test_image_grey_and_rgb():
    X = np.array([[-1.0, 0.0], [1.0, 2.0]])
    grey = render.image(X)
    assert grey.shape == (2, 2, 3) and grey.dtype == np.uint8
    assert tuple(grey[0, 0]) == (0, 0, 0) and tuple(grey[1, 0]) == (255, 255, 255)
    assert tuple(grey[0, 1]) == (128, 128, 128) and tuple(grey[1, 1]) == (255, 255, 255)
    colour = render.image(np.full((1, 2, 2, 3), 255.0) * [1, 0, 0], input_range=(0, 255), enlarge=2)
    assert colour.shape == (1, 4, 4, 3) and tuple(colour[0, 3, 3]) == (255, 0, 0)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        render.image(np.zeros((1, 2, 2, 2)))


def test_compose_beside_under_and_overlay():
    X = np.full((5, 6), -1.0)
    beside = render.compose(X, peaks())
    assert beside.shape == (5, 13, 3)
    assert tuple(beside[0, 0]) == (0, 0, 0) and tuple(beside[0, 6]) == (255, 255, 255)
    assert beside[1, 9, 0] > 150 and beside[1, 9, 1] < 20
    # under: the input on top, a white line, the heatmap below it
    under = render.compose(X, peaks(), layout="under")
    assert under.shape == (11, 6, 3)
    assert tuple(under[0, 0]) == (0, 0, 0) and (under[5] == 255).all()
    np.testing.assert_array_equal(under[6:], render.heatmap(peaks()))
    overlay = render.compose(X, peaks(), layout="overlay", alpha=0.5)
    assert overlay.shape == (5, 6, 3) and tuple(overlay[0, 0]) == (128, 128, 128)  # half white, half black
    with pytest.raises(ValueError, match="layout must be 'beside', 'under' or 'overlay'"):
        render.compose(X, peaks(), layout="sideways")


def test_one_sample_with_its_channel_axis_is_one_picture():
    X = np.zeros((32, 32, 1))
    assert render.image(X).shape == (32, 32, 3)
    assert render.heatmap(np.ones((32, 32, 1))).shape == (32, 32, 3)
    assert render.compose(X, np.ones((32, 32, 1)), enlarge=2).shape == (64, 129, 3)
    assert render.image(np.zeros((2, 32, 32, 1))).shape == (2, 32, 32, 3)


def test_grid_and_save_image(tmp_path):
    a = np.zeros((3, 4, 3), np.uint8)
    b = np.full((3, 4, 3), 100, np.uint8)
    out = render.grid([a, b, a], columns=2, border=1)
    assert out.shape == (2 * 4 + 1, 2 * 5 + 1, 3)
    assert (out[1:4, 6:10] == 100).all() and (out[0] == 255).all()
    path = render.save_image([a, b], tmp_path / "pair.png")
    with Image.open(path) as png:
        loaded = np.asarray(png.convert("RGB"))
    assert loaded.shape == (7, 14, 3) and (loaded[2:5, 8:12] == 100).all()
    with pytest.raises(ValueError, match="same size"):
        render.grid([a, np.zeros((2, 2, 3), np.uint8)])
    with pytest.raises(ValueError, match=r"\.png"):
        render.save_image([a], tmp_path / "pair.jpg")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        render.save_image([a], tmp_path / "missing" / "x.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pair.png"]


def test_bad_relevance():
    with pytest.raises(ValueError, match="NaN"):
        render.heatmap(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="shape"):
        render.heatmap(np.zeros(4))
    with pytest.raises(ValueError, match="scale"):
        render.heatmap(peaks(), scale="loud")


def test_labelled_pictures_are_large_captioned_and_scaled():
    X = np.full((8, 8, 1), -1.0)
    maps = np.zeros((2, 8, 8, 1))
    maps[0, 2, 3] = 2.0
    maps[1, 5, 5] = -1.0
    picture = render.labelled(X, maps, ["predicted 3 (97%)", "for class 3", "for class 5"])
    panel = 128  # 8 pixels enlarged 16 times
    height = render.CAPTION_PIXELS + panel
    assert picture.shape[0] == height and picture.shape[1] > 3 * panel
    assert (picture[:render.CAPTION_PIXELS, :panel] < 128).any()  # the caption's text
    # the input panel is black, the first map's peak full red at the shared scale, the second's half blue
    assert tuple(picture[height - 1, 0]) == (0, 0, 0)
    first = panel + 4
    assert tuple(picture[render.CAPTION_PIXELS + 2 * 16 + 1, first + 3 * 16 + 1]) == (255, 0, 0)
    second = picture[render.CAPTION_PIXELS + 5 * 16 + 1, 2 * first + 5 * 16 + 1]
    assert second[2] > 200 and 100 < second[0] < 150
    # the colour bar: red at the top, blue at the bottom, its labels beside it
    bar = picture[render.CAPTION_PIXELS:, 3 * first + 5]
    assert bar[1][0] > 200 and bar[1][2] < 50 and bar[-2][2] > 200 and bar[-2][0] < 50
    with pytest.raises(ValueError, match="give 3 captions"):
        render.labelled(X, maps, ["one"])


def test_colorbar_limits():
    bar = render.colorbar(64, "bwr", 2.5)
    assert bar.shape == (64, 12 + 48, 3)
    assert (bar[32, 5] > 240).all()  # zero in the middle: white
    with pytest.raises(ValueError, match="height must be an integer >= 8"):
        render.colorbar(4)

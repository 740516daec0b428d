"""Images brought to the model's size as torchvision's Resize and CenterCrop
do (``--resize S --crop H W``), and classes named in the PNGs' captions
(``--class-names FILE``)."""
import json

import numpy as np
import pytest
from PIL import Image

import lrpnb
from lrpnb.cli import main
from lrpnb.pipeline import options, pngs
from lrpnb.sources import load_image


def grey(path, height, width, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(path)
    return pixels


def as_pixels(image):
    """load_image's output (input range 0..255) back to integer pixels."""
    return np.rint(image[..., 0]).astype(np.int64)


def test_a_centre_crop_cuts_the_middle_with_torchvisions_offsets(tmp_path):
    pixels = grey(tmp_path / "wide.png", 20, 41)
    image = load_image(tmp_path / "wide.png", (16, 16), 1, (0, 255), resize=20, crop=True)
    # shorter side already 20: no resampling; offsets round((20-16)/2)=2, round((41-16)/2)=round(12.5)=12
    np.testing.assert_array_equal(as_pixels(image), pixels[2:18, 12:28])


def test_resize_keeps_the_aspect_ratio_rounding_the_longer_side_down(tmp_path):
    grey(tmp_path / "tall.png", 45, 20)
    with Image.open(tmp_path / "tall.png") as picture:
        # torchvision: the shorter side to 10, the longer int(10 * 45 / 20) = 22
        resized = np.asarray(picture.resize((10, 22), Image.Resampling.BILINEAR), dtype=np.int64)
    image = load_image(tmp_path / "tall.png", (8, 8), 1, (0, 255), resize=10, crop=True)
    top, left = int(round((22 - 8) / 2)), int(round((10 - 8) / 2))
    np.testing.assert_array_equal(as_pixels(image), resized[top:top + 8, left:left + 8])


def test_an_image_smaller_than_the_crop_is_padded_with_black_around_it(tmp_path):
    pixels = grey(tmp_path / "small.png", 5, 6)
    image = as_pixels(load_image(tmp_path / "small.png", (9, 10), 1, (0, 255), crop=True))
    expected = np.zeros((9, 10), np.int64)
    expected[2:7, 2:8] = pixels  # torchvision pads (10-6)//2 = 2 left, (9-5)//2 = 2 on top
    np.testing.assert_array_equal(image, expected)


def test_without_crop_images_are_squashed_as_before(tmp_path):
    grey(tmp_path / "wide.png", 20, 40)
    with Image.open(tmp_path / "wide.png") as picture:
        squashed = np.asarray(picture.resize((8, 8), Image.Resampling.BILINEAR), dtype=np.int64)
    np.testing.assert_array_equal(as_pixels(load_image(tmp_path / "wide.png", (8, 8), 1, (0, 255))), squashed)


@pytest.mark.parametrize("size, resize, crop, message", [
    ((32, 32), 40, None, "--size H W .* or --resize/--crop"),
    ((32, 32), None, [32], "not both"),
    (None, None, [32, 32, 3], "--crop takes one or two"),
    (None, 0, None, "--resize takes a positive size"),
    (None, None, [0], "--crop takes one or two positive"),
])
def test_geometry_options_are_checked(size, resize, crop, message):
    with pytest.raises(ValueError, match=message):
        options.geometry(size, resize, crop)


def test_geometry_of_one_crop_value_is_square():
    assert options.geometry(None, 256, [224]) == ((224, 224), 256, True)
    assert options.geometry(None, 256, None) == (None, 256, True)
    assert options.geometry([28, 30]) == ((28, 30), None, False)


def test_explain_resizes_and_crops_a_folder_and_records_how(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for k in range(2):
        grey(folder / f"i{k}.png", 48, 64, seed=k)
    out = tmp_path / "r.npy"
    assert main(["explain", "--model", "lenet5_synthetic", "--data", str(folder), "--out", str(out),
                 "--resize", "40", "--crop", "32"]) == 0
    relevance = np.load(out)
    assert relevance.shape == (2, 32, 32, 1)
    record = json.loads((tmp_path / "r.npy.provenance.json").read_text())
    assert record["images"] == "shorter side resized to 40, then the centre 32 x 32 cut out"
    # the same as explaining the images brought to the model by load_image
    net = lrpnb.load("lenet5_synthetic")
    X = np.stack([load_image(folder / f"i{k}.png", (32, 32), 1, (-1, 1), resize=40, crop=True) for k in range(2)])
    np.testing.assert_allclose(relevance, net.explain(X), rtol=1e-5, atol=1e-7)


def test_evaluate_takes_the_same_geometry(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for k in range(2):
        grey(folder / f"i{k}.png", 48, 64, seed=k)
    assert main(["evaluate", "--model", "lenet5_synthetic", "--data", str(folder), "--resize", "40", "--crop",
                 "32", "--region", "8", "8", "--rule", "epsilon:0.01"]) == 0
    assert "epsilon 0.01" in capsys.readouterr().out


# ---------------------------------------------------------------- class names
def test_captions_name_the_classes():
    scores = np.array([[0.0, 3.0, 1.0]])
    texts = pngs.captions(scores, np.array([[1, 2]]), ["cat", "tabby cat", ""])
    assert texts[0][0].startswith("predicted tabby cat (")
    assert texts[0][1:] == ["for tabby cat", "for 2"]  # a class without a name keeps its number
    assert pngs.captions(scores, np.array([[2]]))[0][1] == "for class 2"


def test_class_names_are_read_one_per_line_and_counted(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("zero\none\n" + "".join(f"digit {k}\n" for k in range(2, 10)) + "\n\n", encoding="utf-8")
    assert pngs.class_names(names, 10)[:3] == ["zero", "one", "digit 2"]
    with pytest.raises(ValueError, match=r"names.txt: 10 class names for a model of 1000 classes"):
        pngs.class_names(names, 1000)
    names.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="must be UTF-8"):
        pngs.class_names(names, 1)


def test_explain_writes_named_captions_and_never_writes_the_names_file(tmp_path):
    data = tmp_path / "d.npy"
    np.save(data, lrpnb.digits.synthetic_digits(2, seed=3).images)
    names = tmp_path / "names.txt"
    names.write_text("".join(f"digit {k}\n" for k in range(10)), encoding="utf-8")
    before = names.read_bytes()
    (tmp_path / "png").mkdir()
    assert main(["explain", "--model", "lenet5_synthetic", "--data", str(data), "--out", str(tmp_path / "r.h5"),
                 "--png", str(tmp_path / "png"), "--class-names", str(names)]) == 0
    assert len(list((tmp_path / "png").glob("*.png"))) == 2 and names.read_bytes() == before
    assert main(["explain", "--model", "lenet5_synthetic", "--data", str(data), "--out", str(names),
                 "--class-names", str(names), "--overwrite"]) == 1
    assert names.read_bytes() == before


@pytest.mark.parametrize("flags", [["--size", "40", "40"], ["--resize", "40"], ["--crop", "32"]])
def test_image_options_on_arrays_are_refused_not_ignored(tmp_path, capsys, flags):
    data = tmp_path / "d.npy"
    np.save(data, lrpnb.digits.synthetic_digits(2, seed=3).images)
    assert main(["explain", "--model", "lenet5_synthetic", "--data", str(data), "--out", str(tmp_path / "r.h5"),
                 *flags]) == 1
    assert "resize images" in capsys.readouterr().err and not (tmp_path / "r.h5").exists()
    assert main(["evaluate", *flags, "--count", "3"]) == 1
    assert "taken as they are" in capsys.readouterr().err

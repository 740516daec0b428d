"""Options several ``lrpnb`` commands share, spelt and explained the same way."""
import argparse

from ..pipeline.options import COMPOSITE_NAMES
from ..rules import RULE_NAMES

__all__ = ["add_method", "add_input_range", "add_device", "add_size", "add_dataset", "add_normalisation",
           "add_weights", "mean_values", "MODEL_FILES"]

#: the model files --model takes, for the options' help
MODEL_FILES = ".txt, .nn, .pickle, .mat, .onnx, .lrpnb; .prototxt with --weights"


def add_method(parser, default_text="simple"):
    """--rule, --param and --composite: the method ``explain`` uses."""
    parser.add_argument("--rule", default=None,
                        help=f"LRP rule or gradient method (default {default_text}): {', '.join(RULE_NAMES)}")
    parser.add_argument("--param", default=None,
                        help="the rule's parameter (epsilon for epsilon, alpha for alphabeta, gamma "
                             "for gamma)")
    parser.add_argument("--composite", default=None,
                        help=f"a rule per layer instead: {', '.join(COMPOSITE_NAMES)} (box bounds "
                             f"from --input-range, normalised by --mean and --std), or formula:N (the Caffe toolbox's formula type N)")


def add_weights(parser):
    """--weights FILE: a Caffe model's weights for the network definition that --model names."""
    parser.add_argument("--weights", default=None, metavar="FILE",
                        help="the weights (.caffemodel) of a Caffe network definition given as --model "
                             "(.prototxt)")


def add_input_range(parser, help_text="images' pixels 0..255 are scaled to this range (default -1 1)"):
    """--input-range LOW HIGH (default -1 1)."""
    parser.add_argument("--input-range", type=float, nargs=2, default=(-1.0, 1.0), metavar=("LOW", "HIGH"),
                        help=help_text)


def add_device(parser):
    """--device cpu|cuda|auto (default cpu)."""
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                        help="where the kernels run (default cpu)")


def add_size(parser):
    """--size H W (squash), or --resize S and --crop H [W] (torchvision's
    Resize and CenterCrop): how images are brought to the model's size."""
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="resize images to H x W whatever their aspect ratio (default: the model's input "
                             "size)")
    parser.add_argument("--resize", type=int, default=None, metavar="S",
                        help="resize each image's shorter side to S pixels, keeping its aspect ratio, then cut "
                             "out the centre (--crop; default the model's input size), as torchvision's "
                             "Resize(S) and CenterCrop do: --resize 256 --crop 224")
    parser.add_argument("--crop", type=int, nargs="+", default=None, metavar="H",
                        help="cut the centre H x W (one value: H x H) out of each image (after --resize)")


def _mean_item(text):
    """One --mean value: a number, or a Caffe mean file (.binaryproto)."""
    if text.lower().endswith(".binaryproto"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or a Caffe mean file (.binaryproto): {text!r}") from None


def mean_values(mean, outputs=()):
    """--mean as numbers: a Caffe mean file given alone becomes its per-channel means (the mean image
    averaged over its pixels, as Caffe's own classification example does). The file is an input:
    none of the command's ``outputs`` may be it."""
    if mean is None or not any(isinstance(value, str) for value in mean):
        return mean
    if len(mean) != 1:
        raise ValueError("--mean takes numbers, or one Caffe mean file (.binaryproto) alone")
    import os

    from ..caffe_import import read_mean_file

    if any(path is not None and os.path.realpath(path) == os.path.realpath(mean[0]) for path in outputs):
        raise ValueError(f"{mean[0]} is an input of this command (--mean); write the output elsewhere")

    return [float(value) for value in read_mean_file(mean[0]).mean(axis=(0, 1), dtype="float64")]


def add_dataset(parser):
    """--dataset: the dataset of an HDF5 --data file."""
    parser.add_argument("--dataset", default=None, help="the dataset to read from an HDF5 --data file")


def add_normalisation(parser, note=""):
    """--mean, --std and --channel-order: what the model takes from samples
    scaled to --input-range."""
    parser.add_argument("--mean", type=_mean_item, nargs="+", default=None, metavar="M",
                        help="subtracted from the samples after --input-range, one value or one per "
                             "channel (torchvision: --input-range 0 1 --mean 0.485 0.456 0.406 "
                             "--std 0.229 0.224 0.225), or a Caffe mean file (.binaryproto): its "
                             "per-channel means, in the file's channel order (BGR for Caffe's ImageNet "
                             "models: with --channel-order bgr)" + note)
    parser.add_argument("--std", type=float, nargs="+", default=None, metavar="S",
                        help="the samples are divided by it after --mean, one value or one per channel")
    parser.add_argument("--channel-order", choices=("rgb", "bgr"), default="rgb",
                        help="channel order the model takes (bgr: Caffe's); images are read as RGB")

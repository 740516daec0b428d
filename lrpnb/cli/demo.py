"""``lrpnb demo``: a few digits explained by the embedded LeNet-5 (or a
model and data given), their heatmaps drawn into a PNG."""
import os
import time

import numpy as np

from ..data_io import check_array_size
from ..pipeline import options
from ..rules import Rule
from .common import add_input_range, add_method

__all__ = ["add_parser", "run", "DEMO_PICTURES", "DEMO_PANEL_PIXELS"]

#: samples the demo draws at most (a picture of thousands would be too tall to open)
DEMO_PICTURES = 64
#: the demo's panels: wider than --png's, for the caption with the drawn label
DEMO_PANEL_PIXELS = 160


def add_parser(commands):
    """The ``demo`` command and its options."""
    demo = commands.add_parser(
        "demo", help="explain digits with the embedded LeNet-5 and draw the heatmaps",
        description="Explain the predicted class of a few digits and write a PNG of the inputs "
                    "and heatmaps. By default: lrpnb's own LeNet-5 (trained on synthetic digits) "
                    "on freshly drawn synthetic digits; --model/--data give others, e.g. the "
                    "toolbox's LeNet-5.nn and test_images.mat.")
    demo.add_argument("--model", default=None, help="model file (default: the embedded LeNet-5)")
    demo.add_argument("--data", default=None,
                      help="data to explain instead of synthetic digits (784-pixel 0..255 rows, "
                           "as the toolbox's MNIST files, are reshaped and padded to 32 x 32)")
    demo.add_argument("--labels", default=None, help="labels of --data, to count the right answers")
    demo.add_argument("--count", type=int, default=8, help="how many samples (default 8)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the synthetic digits")
    add_method(demo, "epsilon 0.01")
    add_input_range(demo, "the model's input range (default -1 1)")
    demo.add_argument("--out", default=None,
                      help="PNG file or folder to write lrpnb_demo.png into (default: the current folder); "
                           "an earlier lrpnb_demo.png is replaced, any other existing file only with "
                           "--overwrite, and a file the demo reads never")
    demo.add_argument("--overwrite", action="store_true",
                      help="replace an existing --out file (never the model, data or labels read)")
    demo.set_defaults(run=run)


def run(args):
    """Run ``lrpnb demo``: the predictions on stdout, the picture written."""
    from ..kernels.activations import softmax_forward
    from ..model_io import load

    started = time.perf_counter()
    model = options.open_model(args.model)[0] if args.model else options.embedded_model()
    input_range = options.check_range(args.input_range)
    method = options.method(args.rule, args.param, args.composite, input_range)
    if args.count < 1:
        raise ValueError(f"--count must be >= 1, got {args.count}")
    # the samples, their relevance and the picture's pixels, a few float64
    # 32 x 32 images each: refused before any of them is made
    check_array_size(args.count * 8 * 32 * 32 * 8, "--count", f"{args.count:,} samples")
    if args.labels is not None and args.data is None:
        raise ValueError("--labels are the labels of --data; give --data too (synthetic digits bring "
                         "their own)")
    path = _picture_path(args, model)
    net = load(model)
    X, labels, origin = _samples(net, args, input_range, path)
    if args.rule is None and args.composite is None:
        method = dict(rule=Rule("epsilon", 0.01 if args.param is None else options.parameter(args.param)))
        args.rule, args.param = "epsilon", f"{method['rule'].param:g}"
    X = X.astype(np.float32)
    before = time.perf_counter()
    relevance, scores = net.explain(X, return_scores=True, **method)
    seconds = time.perf_counter() - before
    probabilities = softmax_forward(scores)
    predicted = np.argmax(scores, axis=1)
    print(f"lrpnb demo: {os.path.basename(model)} on {origin}, explained with "
          f"{options.method_text(args.rule, args.param, args.composite)}")
    for n in range(len(X)):
        known = "" if labels is None else f"  (drawn: {labels[n]})" if args.data is None else \
            f"  (label: {labels[n]})"
        print(f"  sample {n:3d}: predicted {predicted[n]} with confidence {probabilities[n, predicted[n]]:6.1%}"
              f"{known}")
    if labels is not None:
        print(f"  {np.mean(predicted == labels[:len(X)]):.1%} right")
    _draw(path, X, relevance, scores, labels, args.data is None, input_range)
    again = time.perf_counter()
    net.explain(X, **method)  # the kernels are compiled (or loaded from the cache) by now
    warm = time.perf_counter() - again
    print(f"explained {len(X)} sample{'s' * (len(X) != 1)} in {seconds:.2f} s the first time (loading or compiling the "
          f"kernels), {warm * 1000:.1f} ms the second ({len(X) / warm:,.0f} samples/s); "
          f"{time.perf_counter() - started:.1f} s in all")


def _picture_path(args, model):
    """The PNG to write, checked: its own lrpnb_demo.png is replaced, any
    other existing file only with --overwrite, a file the demo reads never."""
    out = args.out or os.getcwd()
    path = os.path.join(out, "lrpnb_demo.png") if os.path.isdir(out) else out
    if not path.lower().endswith(".png"):
        raise ValueError(f"--out {out}: give a folder or a .png file")
    overwrite = args.overwrite or os.path.basename(path) == "lrpnb_demo.png"
    options.check_outputs([path], [model, args.data, args.labels], overwrite=overwrite)
    return path


def _samples(net, args, input_range, path):
    """(samples, labels or None, the samples in words): synthetic digits, or
    the first --count samples of --data (with --labels); ``path``, the
    picture, must not be one of the images read."""
    from ..digits import synthetic_digits
    from ..inputs import input_shape, model_input
    from ..pipeline.evaluate import refuse_read_outputs
    from ..sources import open_source

    if args.data is None:
        digits = synthetic_digits(args.count, seed=args.seed)
        return digits.images, digits.labels, f"{args.count} synthetic digit{'s' * (args.count != 1)} (seed {args.seed})"
    source = open_source(args.data, None, input_shape(net), input_range)
    refuse_read_outputs([path], source)
    X, problems, _ = source.batch(0, min(args.count, len(source)))
    if problems:
        raise ValueError("; ".join(message for _, message in problems))
    X = model_input(net, X, input_range, args.data)
    labels = None
    if args.labels is not None:
        from ..data_io import class_labels, read_data

        labels = class_labels(read_data(args.labels), args.labels)
        if len(labels) < len(X):
            raise ValueError(f"--labels {args.labels} has {len(labels)} label{'s' * (len(labels) != 1)} "
                             f"for {len(X)} samples")
        labels = labels[:len(X)]
    return X, labels, f"the first {len(X)} sample{'s' * (len(X) != 1)} of {args.data}"


def _draw(path, X, relevance, scores, labels, drawn_digits, input_range):
    """The picture of the first DEMO_PICTURES samples beside their relevance."""
    from .. import render
    from ..pipeline.pngs import captions

    predicted = np.argmax(scores, axis=1)
    drawn = min(len(X), DEMO_PICTURES)
    texts = captions(scores[:drawn], predicted[:drawn, None])
    if labels is not None:
        texts = [[first, f"{second}, {'drawn' if drawn_digits else 'label'} {label}"]
                 for (first, second), label in zip(texts, labels)]
    pictures = [render.labelled(X[n], relevance[n], texts[n], input_range=input_range,
                                panel=DEMO_PANEL_PIXELS) for n in range(drawn)]
    render.save_image(pictures, path, columns=min(4, len(pictures)), border=6)
    which = "each input" if drawn == len(X) else f"the first {drawn} inputs"
    print(f"wrote {path}: {which} (left) beside its relevance (red: for the prediction, "
          f"blue: against), with a colour scale")

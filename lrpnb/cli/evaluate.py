"""``lrpnb evaluate``: explanations compared by region perturbation
(:func:`lrpnb.evaluate_dataset`)."""
from ..pipeline.evaluate import EVALUATE_RULES
from .common import (MODEL_FILES, add_dataset, add_device, add_input_range, add_normalisation, add_size, add_weights,
                     mean_values)
from .explain import add_cluster

__all__ = ["add_parser", "run"]


def add_parser(commands):
    """The ``evaluate`` command and its options."""
    evaluate = commands.add_parser(
        "evaluate", help="compare explanations by region perturbation (AOPC)",
        description="Replace the regions of each input one after the other, the most relevant "
                    "first, and follow the class score (Samek et al., IEEE TNNLS 2017). Prints the "
                    "area over the perturbation curve (AOPC) of each method with a 95% interval "
                    "over the samples, against a random order of the regions. By default: the "
                    "embedded LeNet-5 on held-out synthetic digits, comparing "
                    + ", ".join(EVALUATE_RULES) + ".")
    evaluate.add_argument("--model", default=None, help=f"model file ({MODEL_FILES}; default: the embedded "
                                                         f"LeNet-5)")
    add_weights(evaluate)
    evaluate.add_argument("--data", default=None,
                          help="data file, FILE.h5:DATASET, image folder or list (default with the "
                               "embedded model: synthetic digits)")
    add_dataset(evaluate)
    evaluate.add_argument("--relevance", default=None, metavar="R.h5",
                          help="evaluate the maps of an lrpnb explain result for --data (and its targets)")
    evaluate.add_argument("--rule", action="append", default=None, metavar="NAME[:PARAM]",
                          help="a rule or method to explain with and evaluate, repeatable: e.g. "
                               "epsilon:0.01, alphabeta:2, flat, gradient, zb:-1,1, or a composite name "
                               f"(default: {' '.join(EVALUATE_RULES)})")
    evaluate.add_argument("--target", default="pred",
                          help="class to follow: pred (each sample's prediction, default), K, label:FILE")
    evaluate.add_argument("--region", type=int, nargs=2, default=(4, 4), metavar=("H", "W"),
                          help="region size in pixels (default 4 4; vectors: 1 W)")
    evaluate.add_argument("--steps", type=int, default=None,
                          help="regions to replace (default: all of them)")
    evaluate.add_argument("--order", default="morf", choices=("morf", "lerf"),
                          help="most (default) or least relevant region first")
    evaluate.add_argument("--replace", default="uniform",
                          help="what replaces a region: uniform (values drawn in each sample's range, "
                               "default), mean, blur, or a number")
    evaluate.add_argument("--seed", type=int, default=0,
                          help="seeds the uniform values, the random order and the synthetic digits")
    evaluate.add_argument("--count", type=int, default=None,
                          help="evaluate the first COUNT samples (default: all; 500 synthetic digits)")
    add_device(evaluate)
    evaluate.add_argument("--batch-size", type=int, default=256,
                          help="samples per explain pass (default 256)")
    add_input_range(evaluate)
    add_size(evaluate)
    add_normalisation(evaluate, "; the explanations and the perturbation both act on the normalised "
                                "input: the regions are replaced in the model's input space")
    evaluate.add_argument("--out", default=None, metavar="CURVES.h5",
                          help="write the curves, per-sample AOPC and settings as HDF5")
    evaluate.add_argument("--plot", default=None, metavar="CURVES.png", help="write a plot of the mean curves")
    evaluate.add_argument("--overwrite", action="store_true", help="replace existing --out/--plot files")
    add_cluster(evaluate)
    evaluate.set_defaults(run=run)


def run(args):
    """Run ``lrpnb evaluate``: the table on stdout, the files asked for."""
    from ..pipeline import evaluate_dataset

    evaluate_dataset(
        args.model, args.data, dataset=args.dataset, relevance=args.relevance, rule=args.rule,
        target=args.target, region=args.region, steps=args.steps, order=args.order, replace=args.replace,
        seed=args.seed, count=args.count, device=args.device, batch_size=args.batch_size,
        input_range=args.input_range, size=args.size, resize=args.resize, crop=args.crop,
        mean=mean_values(args.mean, [args.out, args.plot]), std=args.std, channel_order=args.channel_order, out=args.out, plot=args.plot,
        overwrite=args.overwrite, weights=args.weights, scheduler=args.scheduler, workers=args.workers)

"""``lrpnb explain``: every sample of a data file or image folder explained
and written to a file (:func:`lrpnb.explain_dataset`)."""
from ..failure import Failure
from .common import (MODEL_FILES, add_dataset, add_device, add_input_range, add_method, add_normalisation, add_size,
                     add_weights, mean_values)

__all__ = ["add_parser", "add_cluster", "add_tokens", "run"]


def add_cluster(command):
    """``--scheduler ADDRESS`` and ``--workers N``: the run on a Dask cluster."""
    group = command.add_mutually_exclusive_group()
    group.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on a running Dask scheduler (tcp://host:8786); its workers read the data "
                            "and model where they lie (pip install 'lrpnb[distributed]')")
    group.add_argument("--workers", type=int, default=None, metavar="N",
                       help="run on a local Dask cluster of N worker processes started for the run")


def add_tokens(command):
    """``--mask``, ``--dtype`` and ``--position``: token-id data for a transformer."""
    command.add_argument("--mask", default=None, metavar="FILE",
                         help="token data's attention mask (N, T) of 0 and 1: a data file or FILE.h5:DATASET "
                              "(default: the dataset attention_mask of an HDF5 --data file, else all ones)")
    command.add_argument("--dtype", default=None, choices=("float32", "float64"),
                         help="the arithmetic (default: the model's weights' dtype for token ids, the "
                              "data's for floats)")
    command.add_argument("--position", type=int, default=None, metavar="K",
                         help="a language model's token whose logits are explained (default -1, the last)")


def add_parser(commands):
    """The ``explain`` command and its options."""
    explain = commands.add_parser(
        "explain", help="explain every sample of a data file or image folder",
        description="Explain the samples of a data file (.npy, .npz, .mat, .txt, .h5) or of "
                    "images (a folder, a .lst/.list file of paths, one .png/.jpg) batch by batch; "
                    "integer (N, T) data for a model that takes tokens is token ids (--mask, --dtype, "
                    "--position), explained per token. "
                    "Writes HDF5 (relevance, prediction, scores, target; resumable) or the "
                    "relevance alone (.npy, .npz, .mat, .txt); on a Dask cluster (--scheduler, "
                    "--workers) also zarr (.zarr, the datasets of the HDF5 result).")
    explain.add_argument("--model", required=True, help=f"model file ({MODEL_FILES})")
    add_weights(explain)
    explain.add_argument("--data", required=True,
                         help="data file, FILE.h5:DATASET, image folder, or .lst/.list file of images")
    add_dataset(explain)
    explain.add_argument("--out", required=True,
                         help="output: .h5/.hdf5, .zarr (with --scheduler/--workers), or .npy/.npz/.mat/.txt")
    add_method(explain)
    explain.add_argument("--target", default="pred",
                         help="class to explain: pred (each sample's prediction, default), "
                              "label:FILE (labels from a data file), K (class K), all, top:K")
    add_device(explain)
    explain.add_argument("--batch-size", type=int, default=256, help="samples per pass (default 256)")
    explain.add_argument("--png", default=None, metavar="DIR",
                         help="also write a PNG per sample (input beside heatmaps) into DIR")
    explain.add_argument("--cmap", default="bwr", help="colormap of the PNG heatmaps (default bwr)")
    explain.add_argument("--class-names", default=None, metavar="FILE",
                         help="name the classes in the PNGs' captions: a text file, one name per line in "
                              "the order of the model's outputs")
    add_input_range(explain)
    add_size(explain)
    add_normalisation(explain)
    explain.add_argument("--overwrite", action="store_true",
                         help="replace an existing output (and an unfinished earlier run's file)")
    explain.add_argument("--compress", action="store_true",
                         help="gzip-compress the HDF5 datasets (level 1, shuffled): about a sixth "
                              "smaller for float32 maps, and slower to write")
    add_cluster(explain)
    add_tokens(explain)
    explain.set_defaults(run=run)


def run(args):
    """Run ``lrpnb explain``; Failure where samples were left out."""
    from ..pipeline import explain_dataset

    summary = explain_dataset(
        args.model, args.data, args.out, dataset=args.dataset, rule=args.rule, param=args.param,
        composite=args.composite, target=args.target, device=args.device, batch_size=args.batch_size,
        png=args.png, cmap=args.cmap, input_range=args.input_range, size=args.size, resize=args.resize,
        crop=args.crop, mean=mean_values(args.mean, _outputs(args)), std=args.std, channel_order=args.channel_order,
        overwrite=args.overwrite, compress=args.compress, class_names=args.class_names, weights=args.weights,
        scheduler=args.scheduler, workers=args.workers, mask=args.mask, dtype=args.dtype, position=args.position)
    if summary.failures:
        raise Failure(f"{summary.failures} of {summary.count} samples could not be read and were left out")


def _outputs(args):
    """The files ``lrpnb explain`` writes besides its PNGs (none of them may be an input)."""
    out = args.out
    return [out, out + ".partial", out + ".lock", out + ".names.txt", out + ".provenance.json"]

"""``lrpnb info`` (a model's layers, shapes and parameter counts, or how a
result file was made) and ``lrpnb convert`` (a model file in another format)."""
import os

from ..pipeline import options
from .common import MODEL_FILES, add_weights

__all__ = ["add_parsers", "run_info", "run_convert"]


def add_parsers(commands):
    """The ``info`` and ``convert`` commands and their options."""
    info = commands.add_parser("info", help="layers, shapes and parameter counts of a model; how a result "
                                            "was made",
                               description="Print the layers, output shapes, parameter counts and "
                                           "the input shape a model expects; for a result of lrpnb "
                                           "explain or evaluate, what it holds and how it was made "
                                           "(model and its SHA-256, method, target, normalisation, "
                                           "data, lrpnb version, date).")
    info.add_argument("model", metavar="FILE", help=f"model file ({MODEL_FILES}) or result file (.h5, or "
                                                    f".npy/.npz/.mat/.txt with its .provenance.json)")
    add_weights(info)
    info.set_defaults(run=run_info)

    convert = commands.add_parser("convert", help="convert a model file to another format",
                                  description=f"Read a model ({MODEL_FILES}) and write it as .txt, "
                                              f".nn/.pickle or .lrpnb (the format from the extension).")
    convert.add_argument("input", help="model file to read")
    add_weights(convert)
    convert.add_argument("output", help="model file to write (.txt, .nn, .pickle; .lrpnb for any network)")
    convert.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    convert.set_defaults(run=run_convert)


def run_info(args):
    """Print how a result was made (:func:`run_result_info`), or a model's
    input, then a row per layer (per node of a graph), then the totals."""
    from .. import provenance

    weights = getattr(args, "weights", None)  # a namespace made in Python may lack it
    made = provenance.read(args.model) if os.path.isfile(args.model) and weights is None else None
    if made is not None:
        run_result_info(args.model, made)
        return
    run_model_info(args)


def run_result_info(path, made):
    """The arrays of a result file (HDF5: each dataset's shape and type;
    .npy: its shape) and its provenance record."""
    from .. import provenance
    from ..network import printable as shown

    print(f"result: {shown(path)}")
    for name, shape, dtype in _arrays(path):
        print(f"  {shown(name):<12} {' x '.join(map(str, shape)) or 'scalar':<20} {dtype}")
    for line in provenance.describe(made):
        print(line)


def _arrays(path):
    """(name, shape, dtype) of the arrays a result file holds, read from
    headers only (nothing is loaded)."""
    import numpy as np

    if path.lower().endswith((".h5", ".hdf5")):
        import h5py

        try:
            with h5py.File(path, "r") as handle:
                return [(name, item.shape, item.dtype) for name, item in handle.items()
                        if isinstance(item, h5py.Dataset)]
        except (OSError, RuntimeError, KeyError, TypeError, ValueError, SystemError) as error:
            raise ValueError(f"{path}: cannot read the file ({error})") from None
    if path.lower().endswith(".npy"):
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: not a readable .npy file ({error})") from None
        return [("relevance", array.shape, array.dtype)]
    return []


def parameter_count(layer):
    """How many learned values a layer holds: its arrays in lrpnb's model
    format, less the index and shape arrays of the layers that move values."""
    import numpy as np

    from ..model_graph import LAYERS

    arrays = LAYERS.get(type(layer).__name__, (None, None, ()))[2]
    return sum(int(np.size(getattr(layer, name))) for name in arrays if name not in ("index", "shape"))


def run_model_info(args):
    """Print the input, then a row per layer (per node of a graph), then the totals."""
    from ..inputs import input_shape
    from ..model_io import load
    from ..network import printable as shown

    net = load(args.model, weights=getattr(args, "weights", None))
    shape = input_shape(net)
    print(f"model: {shown(args.model)}")
    shapes = [None] * len(net.layers)
    if len(net.inputs) > 1:
        given = net.input_shapes
        for name in net.inputs:
            size = "unknown" if given[name] is None else " x ".join(map(str, given[name]))
            note = "" if name in net.explained else " (not explained)"
            print(f"input {shown(name)}: {size}{note}")
        if None not in given.values():
            shapes = net.output_shapes({name: (1,) + value for name, value in given.items()})
    elif shape is None:
        print("input: unknown (no layer fixes it)")
    else:
        what = {1: "vectors of", 2: "sequences of"}.get(len(shape), "images of")
        print(f"input: {what} {' x '.join(map(str, shape))}")
        shapes = net.output_shapes((1,) + shape)
    graph = not net.is_sequential
    if graph and len(net.inputs) > 1:
        print(f"graph of {len(net.nodes)} nodes")
    elif graph:  # a graph: each node's name and the nodes it reads
        print(f"graph of {len(net.nodes)} nodes; the input is (N, {', '.join(map(str, shape or ('...',)))})")
    names = f"{'node':<24} " if graph else ""
    print(f"{'#':>3}  {names}{'layer':<36} {'output':<16} {'parameters':>10}" + ("  inputs" if graph else ""))
    total = 0
    for k, (node, out) in enumerate(zip(net.nodes, shapes)):
        layer = node.layer
        count = parameter_count(layer)
        total += count
        text = "" if out is None else " x ".join(map(str, out[1:]))
        name = f"{shown(node.name):<24} " if graph else ""
        inputs = "  " + ", ".join(map(shown, node.inputs)) if graph else ""
        print(f"{k:>3}  {name}{shown(layer.describe()):<36} {text:<16} {count:>10,}{inputs}")
    print(f"total parameters: {total:,}")
    if shapes and shapes[-1] is not None:
        print(f"classes: {shapes[-1][-1]}")


def run_convert(args):
    """Read INPUT and write it as OUTPUT's format."""
    from ..model_io import load, save

    if os.path.abspath(args.input) == os.path.abspath(args.output):
        raise ValueError("convert needs two different files")
    options.check_outputs([args.output], [options.open_model(args.input)[0], args.weights], args.overwrite)
    net = load(args.input, weights=args.weights)
    save(net, args.output)
    print(f"wrote {args.output}: {len(net.layers)} layers from {args.input}")

"""The ``lrpnb`` command."""
import argparse
import sys

import numpy as np

from . import __version__
from .data_io import read_data, write_data
from .model_io import load
from .rules import resolve


def _explain(args):
    net = load(args.model)
    resolve(args.rule, args.param)  # fail before reading data
    data = read_data(args.data)
    if data.dtype.kind not in "biuf":
        raise ValueError(f"{args.data}: data must be numeric, got dtype {data.dtype}")
    if args.out.lower().endswith(".txt") and data.ndim > 2:
        # checked now rather than after explaining everything
        raise ValueError(f"{args.out}: a .txt file holds at most 2 dimensions, and the relevance "
                         f"will have shape {data.shape}; write .npy, .npz or .mat")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    parts = [net.explain(data[start:start + args.batch_size], rule=args.rule, param=args.param)
             for start in range(0, len(data), args.batch_size)]
    if not parts:
        raise ValueError(f"{args.data}: holds no samples")
    relevance = np.concatenate(parts)
    write_data(relevance, args.out)
    rule = args.rule or "simple"
    param = "" if args.param is None else f" {args.param:g}"
    print(f"explained {len(relevance)} samples of shape {relevance.shape[1:]} "
          f"with the {rule}{param} rule; relevance written to {args.out}")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="lrpnb", description="Layer-wise Relevance Propagation with compiled kernels.")
    parser.add_argument("--version", action="version", version=f"lrpnb {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    explain = commands.add_parser(
        "explain", help="explain the predicted class of every sample in a data file",
        description="Explain each sample's predicted class and write the relevance maps.")
    explain.add_argument("--model", required=True, help="model file (.txt, .nn, .pickle, .mat)")
    explain.add_argument("--data", required=True,
                         help="data file (.npy, .npz, .mat, .txt) shaped as the model's input")
    explain.add_argument("--out", required=True, help="output file for the relevance (.npy, .npz, .mat, .txt)")
    explain.add_argument("--rule", default=None,
                         help="LRP rule or gradient method: simple (default), epsilon, alphabeta, flat, "
                              "ww, zplus, gamma, gradient, sensitivity, deconvnet, guided_backprop, "
                              "gradient_x_input")
    explain.add_argument("--param", type=float, default=None,
                         help="the rule's parameter (epsilon for epsilon, alpha for alphabeta, "
                              "gamma for gamma)")
    explain.add_argument("--batch-size", type=int, default=256, help="samples per pass (default 256)")
    explain.set_defaults(run=_explain)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError, TypeError) as error:
        print(f"lrpnb {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"lrpnb {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

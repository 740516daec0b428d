"""The ``lrpnb`` command: explain, evaluate, demo, info, convert, toolbox.

Each command's options and run are in a module of this package; the work of
``explain`` and ``evaluate`` is :func:`lrpnb.explain_dataset` and
:func:`lrpnb.evaluate_dataset`. :func:`main` turns their errors into one
line on stderr and an exit status.

Only the standard library is imported before :func:`main` runs: numpy,
numba and the commands' modules load inside it, so that a Ctrl-C at any
moment after Python starts ends as every interruption does (one line,
status 130), never as a traceback.
"""
import argparse
import os
import sys

from .. import __version__
from ..failure import Failure

__all__ = ["main", "build_parser", "parse"]


def build_parser():
    """The parser of every command; each sets ``run`` to the function that runs it."""
    from . import demo, evaluate, explain, info, toolbox

    parser = argparse.ArgumentParser(
        prog="lrpnb", description="Layer-wise Relevance Propagation with compiled kernels.")
    parser.add_argument("--version", action="version", version=f"lrpnb {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.add_parser(commands)
    explain.add_parser(commands)
    evaluate.add_parser(commands)
    info.add_parsers(commands)
    toolbox.add_parser(commands)
    parser.commands = commands.choices  # the parser of each command, for its usage in errors
    return parser


def parse(argv=None):
    """The arguments of ``argv``; an option a command does not know is
    reported with that command's usage (``usage: lrpnb explain ...``), not
    the top-level one. Exits (status 2) on an error, as argparse does."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # an unknown option before the command's name is the top level's
        before = argv[:argv.index(args.command)] if args.command in argv else []
        which = parser if any(item in before for item in unknown) else parser.commands[args.command]
        which.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv=None):
    """Run the command of ``argv`` (default: sys.argv); returns the exit status:
    0, 1 on an error or Failure, 130 on Ctrl-C, 141 on a closed pipe."""
    command = "lrpnb"
    try:
        args = parse(argv)  # imports the commands' modules
        command = f"lrpnb {args.command}"
        args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
    except BrokenPipeError:
        # the reader went away (lrpnb info M | head): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Failure as failure:
        print(f"{command}: {failure}", file=sys.stderr)
        return 1
    except (ValueError, OSError, TypeError, RuntimeError, ImportError) as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        if not getattr(stop, "reported", False):
            print(f"{command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

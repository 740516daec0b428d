"""The LRP Toolbox's plain-text model format (``.txt``): read and written.

The format of the toolbox's Python and Matlab ports (specified in
formats/README.md): one line per layer header (``Linear m n``,
``Convolution h w d n s0 s1``, ``SumPool h w s0 s1``, ``Rect``, ...), then
for Linear and Convolution a line of weights and a line of biases. The
reader builds the whole network before returning it; a malformed file raises
ValueError naming the line. :data:`PLAIN_LAYERS`, the layers that take no
sizes, is shared with the pickle and Matlab readers.
"""
import re

import numpy as np

from .network import Convolution, Flatten, Linear, MaxPool, Network, Rect, SoftMax, SumPool, Tanh

__all__ = ["read_txt", "write_txt", "PLAIN_LAYERS"]

#: the toolbox's layers without parameters or sizes, by the name its files give them
PLAIN_LAYERS = {"Rect": Rect, "Tanh": Tanh, "SoftMax": SoftMax, "Flatten": Flatten}

# numpy >= 2 prints scalars as np.float64(0.5); the toolbox's writer used repr().
# One greedy class between the parentheses and no \s* around it: the match
# takes linear time (spaces are stripped afterwards), where lazy and greedy
# runs of spaces side by side backtracked cubically on "np.float64(   ...x"
_NUMPY_SCALAR = re.compile(r"(?:np|numpy)\.float(?:16|32|64|128)?\(([^()]*)\)")


class _Lines:
    """The non-empty lines of a text model, with their 1-based line numbers."""

    def __init__(self, path, text):
        self.path = path
        self.lines = [(k + 1, line.strip()) for k, line in enumerate(text.splitlines()) if line.strip()]
        self.pos = 0

    def error(self, lineno, message):
        return ValueError(f"{self.path}, line {lineno}: {message}")

    def next(self, what):
        if self.pos >= len(self.lines):
            last = self.lines[-1][0] if self.lines else 0
            raise ValueError(f"{self.path}, line {last + 1}: file ends where {what} was expected")
        self.pos += 1
        return self.lines[self.pos - 1]

    def numbers(self, what):
        lineno, line = self.next(what)
        tokens = _NUMPY_SCALAR.sub(lambda match: f" {match.group(1).strip()} ", line).split()
        values = np.empty(len(tokens))
        for k, token in enumerate(tokens):
            try:
                values[k] = float(token)
            except ValueError:
                raise self.error(lineno, f"{what}: {token!r} is not a number") from None
        if not np.isfinite(values).all():
            raise self.error(lineno, f"{what} contains NaN or infinite values")
        return lineno, values


def _sizes(lines, lineno, tokens, names):
    if len(tokens) - 1 != len(names):
        raise lines.error(lineno, f"{tokens[0]} needs {len(names)} sizes ({' '.join(names)}), "
                                  f"got {len(tokens) - 1}")
    values = []
    for name, token in zip(names, tokens[1:]):
        try:
            value = int(token)
        except ValueError:
            raise lines.error(lineno, f"{tokens[0]}: {name} must be an integer, got {token!r}") from None
        if value < 1:
            raise lines.error(lineno, f"{tokens[0]}: {name} must be positive, got {value}")
        values.append(value)
    return values


def _expect_count(lines, lineno, values, count, what):
    if values.size != count:
        raise lines.error(lineno, f"{what}: expected {count} numbers, got {values.size}")


def read_txt(path):
    """Read a text model file.

    Parameters
    ----------
    path : str
        The file.

    Returns
    -------
    Network
        The network, on the CPU.

    Raises
    ------
    ValueError
        The file is not UTF-8 text, is empty, or is malformed (the message
        names the line).
    """
    with open(path, encoding="utf-8", errors="strict") as handle:
        try:
            text = handle.read()
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not a text model file ({error})") from None
    lines = _Lines(path, text)
    if not lines.lines:
        raise ValueError(f"{path}: the model file is empty")
    layers = []
    while lines.pos < len(lines.lines):
        lineno, header = lines.next("a layer")
        tokens = header.split()
        name = tokens[0]
        if name == "Linear":
            m, n = _sizes(lines, lineno, tokens, ["m", "n"])
            wline, values = lines.numbers("Linear weights")
            if values.size == n and m > 1:
                # legacy variant: one line per row of W
                rows = [values]
                for _ in range(m - 1):
                    rline, row = lines.numbers("Linear weight row")
                    _expect_count(lines, rline, row, n, "Linear weight row")
                    rows.append(row)
                W = np.stack(rows)
            else:
                _expect_count(lines, wline, values, m * n, f"Linear {m} {n} weights")
                W = values.reshape(m, n)
            bline, B = lines.numbers("Linear bias")
            _expect_count(lines, bline, B, n, "Linear bias")
            layers.append(Linear(W, B))
        elif name == "Convolution":
            h, w, d, n, s0, s1 = _sizes(lines, lineno, tokens, ["h", "w", "d", "n", "s0", "s1"])
            wline, W = lines.numbers("Convolution weights")
            _expect_count(lines, wline, W, h * w * d * n, f"Convolution {h}x{w}x{d}x{n} weights")
            bline, B = lines.numbers("Convolution bias")
            _expect_count(lines, bline, B, n, "Convolution bias")
            layers.append(Convolution(W.reshape(h, w, d, n), B, stride=(s0, s1)))
        elif name in ("SumPool", "MaxPool"):
            h, w, s0, s1 = _sizes(lines, lineno, tokens, ["h", "w", "s0", "s1"])
            layers.append((SumPool if name == "SumPool" else MaxPool)((h, w), (s0, s1)))
        elif name in PLAIN_LAYERS:
            if len(tokens) > 1:
                raise lines.error(lineno, f"{name} takes no sizes, got {' '.join(tokens[1:])!r}")
            layers.append(PLAIN_LAYERS[name]())
        else:
            raise lines.error(lineno, f"unknown layer {name!r}; known layers: Linear, Convolution, "
                                      f"SumPool, MaxPool, {', '.join(PLAIN_LAYERS)}")
    return Network(layers)


def _number_line(values):
    # repr of a Python float is the shortest string that reads back exactly
    return " ".join(repr(v) for v in np.ravel(values).tolist()) + "\n"


def write_txt(net, path):
    """Write ``net`` (a chain of the toolbox's layers) to ``path`` in the
    text format; every number is written so that it reads back exactly."""
    with open(path, "w", encoding="utf-8") as handle:
        for layer in net.layers:
            handle.write(layer.describe() + "\n")
            if isinstance(layer, (Linear, Convolution)):
                handle.write(_number_line(layer.W))
                handle.write(_number_line(layer.B))


"""Token-id data in ``explain_dataset`` (``lrpnb explain``): which data is
read as token ids, which of the model's inputs take the ids and the
attention mask, and what the run records of it.

Token data is integer (N, T) data (any integer dtype but uint8, which is
pixels) for a model that takes tokens: one with several inputs (the ids and
the attention mask of an exported transformer) or whose input feeds an
Embedding. The ids go to the input named ``input_ids`` (or the model's only
one), the mask to ``attention_mask``: from ``--mask FILE``, else from a
dataset ``attention_mask`` beside the ids in an HDF5 data file, else all
ones (every token attended). The relevance written is the ids' (N, T).
"""
import os
import sys
import types

import numpy as np

from ..sources import HDF5Source, TokenSource, open_source

__all__ = ["TOKEN_INPUT", "MASK_INPUT", "DTYPES", "arithmetic", "takes_tokens", "token_data", "classes", "keywords",
           "record_items", "method_words", "token_relevance"]

#: the model inputs that take the token ids and the attention mask (Hugging Face's names)
TOKEN_INPUT = "input_ids"
MASK_INPUT = "attention_mask"

#: what --dtype accepts
DTYPES = ("float32", "float64")


def arithmetic(dtype):
    """``--dtype`` as a numpy dtype (None stays None: the weights' dtype)."""
    if dtype is None:
        return None
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in DTYPES:
        raise ValueError(f"--dtype must be {' or '.join(DTYPES)}, got {dtype!r}")
    return np.dtype(name)


def _is_token_array(source):
    data = getattr(source, "data", None)
    return data is not None and data.dtype.kind in "iu" and data.dtype != np.uint8 and len(source.sample_shape) == 1


def takes_tokens(net):
    """Whether ``net`` takes token ids: several inputs, or an input read by an Embedding."""
    from ..layers import Embedding

    inputs = tuple(getattr(net, "inputs", ()) or ())
    if len(inputs) > 1:
        return True
    nodes = getattr(net, "nodes", ())
    return any(isinstance(node.layer, Embedding) and set(node.inputs) & set(inputs or ("input",)) for node in nodes)


def _input_names(net, where):
    """(ids input, mask input or None) of ``net``'s inputs."""
    inputs = tuple(getattr(net, "inputs", ("input",)))
    mask = MASK_INPUT if MASK_INPUT in inputs else None
    rest = [name for name in inputs if name != mask]
    ids = TOKEN_INPUT if TOKEN_INPUT in rest else rest[0] if len(rest) == 1 else None
    others = [name for name in rest if name != ids]
    if ids is None or others:
        raise ValueError(f"{where}: the model's inputs are {', '.join(inputs)}; lrpnb explain gives token ids "
                         f"({TOKEN_INPUT}) and an attention mask ({MASK_INPUT}): explain the others from Python, "
                         f"a dict name -> array to Network.explain")
    explained = tuple(getattr(net, "explained", inputs))
    if ids not in explained:
        raise ValueError(f"{where}: the network computes relevance for {', '.join(explained)} only, not for the "
                         f"token ids ({ids}); set net.explained = {ids!r}")
    return ids, mask


def _mask_source(mask, source, mask_input):
    """(the mask's source or None, what names it in the record)."""
    if mask is not None:
        if mask_input is None:
            raise ValueError(f"{mask}: the model has no {MASK_INPUT} input to take an attention mask (--mask)")
        return open_source(mask), os.path.abspath(os.fspath(mask))
    if mask_input is None:
        return None, None
    if isinstance(source, HDF5Source) and source.has_dataset(MASK_INPUT):
        return HDF5Source(source.path, MASK_INPUT), f"{os.path.abspath(source.path)}:{MASK_INPUT}"
    print(f"lrpnb explain: {source.name}: no attention mask (--mask): every token is attended", file=sys.stderr)
    return None, "ones"


def token_data(net, source, mask=None, mean=None, std=None, channel_order="rgb"):
    """The token plan of a run, or None for data that is not token ids.

    Returns
    -------
    SimpleNamespace or None
        ``source`` (a :class:`lrpnb.sources.TokenSource`), ``shape`` (T,),
        ``mask`` (what names the mask: a path, FILE.h5:attention_mask,
        'ones', or None for a model without a mask input).
    """
    if not (_is_token_array(source) and takes_tokens(net)):
        if mask is not None:
            raise ValueError(f"{mask}: --mask goes with token ids (integer (N, T) data) for a model that takes "
                             f"tokens; {source.name} holds {getattr(getattr(source, 'data', None), 'dtype', 'images')} "
                             f"samples of shape {tuple(source.sample_shape)}")
        return None
    if mean is not None or std is not None or channel_order != "rgb":
        raise ValueError(f"{source.name}: --mean, --std and --channel-order normalise images; token ids are "
                         f"taken as they are")
    ids_input, mask_input = _input_names(net, source.name)
    mask_source, mask_words = _mask_source(mask, source, mask_input)
    tokens = TokenSource(source, mask_source, ids_input, mask_input)
    return types.SimpleNamespace(source=tokens, shape=tuple(tokens.sample_shape), mask=mask_words)


def classes(net, tokens, method):
    """The number of the model's classes (or vocabulary entries), from the
    scores of the first sample: the model is tried on the data before any
    output exists."""
    probe, _, _ = tokens.source.batch(0, 1)
    try:
        scores = net.scores(probe, **{key: value for key, value in method.items() if key in ("dtype", "position")})
    except ValueError as error:
        raise ValueError(f"{tokens.source.name}, sample 0: {error}") from None
    return int(np.shape(scores)[-1])


def keywords(dtype, position):
    """The ``Network.explain`` keywords of --dtype and --position (the ones given)."""
    chosen = {}
    if dtype is not None:
        chosen["dtype"] = arithmetic(dtype).type
    if position is not None:
        if isinstance(position, bool) or not isinstance(position, (int, np.integer)):
            raise ValueError(f"--position must be a token position (an integer, -1 the last), got {position!r}")
        chosen["position"] = int(position)
    return chosen


def record_items(tokens, dtype, position):
    """What a run's settings record of the token options (only those that
    apply, so that the records of image and array runs stay as they were)."""
    items = {}
    if tokens is not None and tokens.mask is not None:
        items["mask"] = tokens.mask
    if dtype is not None:
        items["dtype"] = arithmetic(dtype).name
    if position is not None:
        items["position"] = int(position)
    return items


def method_words(text, dtype, position):
    """The method's words with the arithmetic and the position explained."""
    if dtype is not None:
        text += f" in {arithmetic(dtype).name}"
    if position is not None:
        text += f" at position {int(position)}"
    return text


def token_relevance(relevance, X):
    """The relevance of a batch's token ids: the entry of the ids (the first
    input of a dict ``X``) of the dict that explain answers a dict with."""
    if isinstance(relevance, dict):
        return relevance[next(iter(X))]
    return relevance

"""The LRP Toolbox's Matlab model format (``.mat``): read only.

A MAT-file holding the Matlab port's saved ``modules.Sequential`` object
(MCOS), decoded with the mat-io package (imported when a file is read).
Write ``.txt`` for the Matlab port: it reads the text format.
"""
import os
import tempfile
import warnings

import numpy as np

from .model_text import PLAIN_LAYERS
from .network import Convolution, Linear, MaxPool, Network, SumPool

__all__ = ["read_mat"]


def read_mat(path):
    """Read a Matlab model file.

    Parameters
    ----------
    path : str
        A MAT-file holding one ``modules.Sequential`` object.

    Returns
    -------
    Network
        The network, on the CPU.

    Raises
    ------
    ValueError
        The file is not a regular file or not a well-formed MAT-file of
        version 5 (v6, v7; every element is checked before mat-io decodes
        it), its compressed elements would inflate past the size limit of
        :func:`lrpnb.data_io.check_array_size`, it does not hold exactly
        one model, or the model has no modules or one lrpnb does not know.
    """
    from ._matfile import checked_v5_bytes
    from .data_io import check_array_size

    # mat-io's compiled reader crashes the process on forged bytes: the whole
    # element tree is checked first (compressed elements under the size
    # policy of data files), and mat-io decodes the bytes checked (a private
    # copy), not the file again
    data = checked_v5_bytes(path, lambda nbytes, what, file_size: check_array_size(nbytes, path, what, file_size))
    # mat-io sets a pandas option at import that newer pandas deprecates
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import matio
        except ImportError:  # pragma: no cover - mat-io is a dependency
            raise ImportError("reading .mat models needs the mat-io package (pip install mat-io)") from None
        with tempfile.TemporaryDirectory(prefix="lrpnb-mat-") as folder:
            copy = os.path.join(folder, "model.mat")
            with open(copy, "wb") as handle:
                handle.write(data)
            try:
                contents = matio.load_from_mat(copy)
            except Exception as error:
                raise ValueError(f"{path}: not a readable MAT-file ({type(error).__name__}: {error})") from None
    try:
        return _network(path, contents)
    except ValueError as error:
        if str(error).startswith(f"{path}:"):
            raise
        raise ValueError(f"{path}: {error}") from None
    except Exception as error:  # noqa: BLE001 - forged properties of any type are a bad file
        raise ValueError(f"{path}: not a toolbox model ({type(error).__name__}: {error})") from None


def _network(path, contents):
    models = [v for v in contents.values() if getattr(v, "classname", None) == "modules.Sequential"]
    if len(models) != 1:
        found = sorted(contents)
        raise ValueError(f"{path}: expected one modules.Sequential object, found "
                         f"{len(models)} among the variables {found}")
    modules = np.ravel(models[0].properties.get("modules", np.empty(0, dtype=object)))
    layers = [_layer_from_matlab(module, index) for index, module in enumerate(modules)]
    if not layers:
        raise ValueError(f"{path}: the model has no modules")
    return Network(layers)

def _matlab_ints(props, name, index, kind):
    if name not in props:
        raise ValueError(f"module {index} ({kind}) has no property {name!r}")
    return tuple(int(v) for v in np.ravel(props[name]))


def _layer_from_matlab(module, index):
    kind = str(getattr(module, "classname", "")).removeprefix("modules.")
    props = getattr(module, "properties", None) or {}
    if kind == "Linear":
        return Linear(np.asarray(props["W"], dtype=np.float64).reshape(np.shape(props["W"])[0], -1),
                      np.ravel(props["B"]))
    if kind == "Convolution":
        # Matlab drops trailing singleton dimensions; filtersize keeps h w d n
        size = _matlab_ints(props, "filtersize", index, kind)
        W = np.asarray(props["W"], dtype=np.float64)
        if W.size != int(np.prod(size)):
            raise ValueError(f"module {index} (Convolution): W has {W.size} values for filter size {size}")
        W = W.reshape(size)
        return Convolution(W, np.ravel(props["B"]), stride=_matlab_ints(props, "stride", index, kind))
    if kind in ("SumPool", "MaxPool"):
        cls = SumPool if kind == "SumPool" else MaxPool
        return cls(_matlab_ints(props, "pool", index, kind), _matlab_ints(props, "stride", index, kind))
    if kind in PLAIN_LAYERS:
        return PLAIN_LAYERS[kind]()
    raise ValueError(f"module {index} is a {kind or type(module).__name__}, not a layer lrpnb knows")

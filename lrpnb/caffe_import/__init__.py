"""Reading Caffe models (``lrpnb.load("deploy.prototxt", weights="net.caffemodel")``) into graph networks.

The network definition (``.prototxt``, protobuf text format) and the weights
(``.caffemodel``, protobuf binary) are read with the ``protobuf`` package
(``pip install "lrpnb[caffe]"``) through a schema of only the messages and
fields lrpnb reads, with Caffe's field numbers (``schema``); no Caffe
installation is needed. Both layer syntaxes are read: ``layer {}`` with string
types and the 2014-era ``layers {}`` (V1, enum types, blobs with num,
channels, height and width). Weights are found by layer name; layers of the
weights file that the definition lacks (data, loss and accuracy layers,
auxiliary classifiers) are ignored, as Caffe does.

Images are NCHW in Caffe and NHWC in lrpnb: filters (n, d/g, h, w) become
(h, w, d/g, n), and an InnerProduct that reads a flattened image gets its
rows in lrpnb's (H, W, C) order. formats/README.md lists the layers and
fields read. Anything else, a malformed file included, is a ValueError that
starts with the file's path and names the layer and its type.

The modules: ``schema`` (the message classes, built at run time),
``parser`` (the files), ``graph`` (the walk over the layers) and
``layer_map`` (one handler per Caffe layer type).
"""
import os

__all__ = ["read_caffe", "read_mean_file"]


def _protobuf():
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        raise ImportError("reading Caffe models needs the protobuf package: pip install \"lrpnb[caffe]\"") from None


def read_caffe(path, weights=None):
    """A Caffe network definition (``.prototxt``) with its weights (``.caffemodel``) as a graph
    :class:`~lrpnb.Network`; without ``weights`` the definition must hold them (blobs in its layers)."""
    _protobuf()
    from .graph import Builder
    from .parser import read_caffemodel, read_prototxt

    path = os.fspath(path)
    net = read_prototxt(path)
    blobs = None
    if weights is not None:
        weights = os.fspath(weights)
        blobs = read_caffemodel(weights)
    return Builder(net, path, blobs, weights).run()


def read_mean_file(path):
    """A Caffe mean image (``.binaryproto``) as float32 (H, W, C), channels in the file's order (BGR for
    ImageNet models)."""
    _protobuf()
    from .parser import read_binaryproto

    return read_binaryproto(os.fspath(path))

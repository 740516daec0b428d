"""Explaining whole data sets: reading samples in batches, writing results.

The pieces the ``lrpnb`` command is made of, gathered under one name; they
live in :mod:`lrpnb.inputs` (what a model takes), :mod:`lrpnb.sources`
(samples read batch by batch) and :mod:`lrpnb.writers` (results written
batch by batch), and :func:`lrpnb.explain_dataset` runs them all:

- :func:`input_shape` reads the input a model expects off its layers;
- :class:`ImageSource`, :class:`ArraySource` and :class:`HDF5Source` give
  samples batch by batch (images are loaded, resized and scaled on the way);
- :class:`HDF5Writer` writes results batch by batch into an HDF5 file that
  appears under its name only when complete, and resumes an interrupted run.
"""
from .inputs import describe_input, input_shape, model_input, normalise, sample_shape
from .sources import IMAGE_EXTENSIONS, ArraySource, HDF5Source, ImageSource, load_image, open_source
from .writers import COMPRESSION, HDF5Writer, NpyWriter

__all__ = ["input_shape", "sample_shape", "model_input", "describe_input", "ImageSource", "ArraySource",
           "HDF5Source", "open_source", "HDF5Writer", "NpyWriter", "IMAGE_EXTENSIONS", "load_image",
           "normalise", "COMPRESSION"]

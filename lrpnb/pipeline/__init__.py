"""Whole data sets from Python: what the ``lrpnb explain`` and ``lrpnb
evaluate`` commands run, as functions.

- :func:`explain_dataset` explains every sample of a data file or image
  folder batch by batch (read ahead on a thread, written resumably);
- :func:`evaluate_dataset` compares explanations by region perturbation.

The command line only parses its options and calls these; keywords are
named as the options.
"""
from .evaluate import EVALUATE_RULES, Evaluation, evaluate_dataset
from .explain import ExplainSummary, explain_dataset

__all__ = ["explain_dataset", "evaluate_dataset", "ExplainSummary", "Evaluation", "EVALUATE_RULES"]

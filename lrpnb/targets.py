"""Which classes an explanation starts from: one Target value for every form.

A target is given in one of three vocabularies, each parsed here once:

- the API (``Network.explain(target=...)``): None (each sample's predicted
  class), an int (one class for every sample), an int array of length N (a
  class per sample), ``'all'`` (every class), ``('topk', k)`` (each sample's
  k best classes);
- the command line (``--target``): ``pred``, ``K``, ``all``, ``top:K``,
  ``label:FILE``;
- the LRP Toolbox's image lists: -1 (the predicted class), -2 (the five
  best), ``k`` (class k).

:meth:`Target.classes` turns any of them into the (N, T) classes explained
for given class scores; the same rules serve the network, the command line
and the files.
"""
import dataclasses
import numbers

import numpy as np

__all__ = ["Target", "target_classes"]

_API_FORMS = "None, an int, an int array, 'all' or ('topk', k)"


@dataclasses.dataclass(frozen=True, eq=False)
class Target:
    """The classes to explain.

    Attributes
    ----------
    kind : {'pred', 'class', 'label', 'all', 'top'}
        'pred': each sample's predicted class; 'class': one class for every
        sample; 'label': a class per sample; 'all': every class; 'top':
        each sample's ``value`` best classes.
    value : None, int or int array
        The class ('class'), the classes per sample ('label') or k ('top').
    """

    kind: str
    value: object = None

    # ------------------------------------------------------------ parsing
    @classmethod
    def parse(cls, target):
        """A Target from the API's forms (a Target is returned as it is)."""
        if isinstance(target, Target):
            return target
        if target is None:
            return cls("pred")
        if isinstance(target, str):
            if target != "all":
                raise ValueError(f"target must be {_API_FORMS}; got {target!r}")
            return cls("all")
        if isinstance(target, tuple):
            if len(target) != 2 or target[0] != "topk" or not isinstance(target[1], numbers.Integral) \
                    or isinstance(target[1], bool) or target[1] < 1:
                raise ValueError(f"target ('topk', k) needs an int k >= 1, got {target!r}")
            return cls("top", int(target[1]))
        array = np.asarray(target)
        if array.dtype.kind not in "iu" or array.ndim > 1:
            raise ValueError(f"target must be {_API_FORMS}; got {target!r}")
        if array.ndim == 0:
            return cls("class", int(array))
        return cls("label", array)

    @classmethod
    def from_command_line(cls, spec, count=None):
        """A Target from ``--target``: pred, K, all, top:K or label:FILE
        (FILE holds one class per sample, or one-hot rows; ``count`` samples)."""
        if spec == "pred":
            return cls("pred")
        if spec == "all":
            return cls("all")
        if spec.startswith("top:"):
            k = spec[4:]
            if not k.isdigit() or int(k) < 1:
                raise ValueError(f"--target top:K needs an integer K >= 1, got {spec!r}")
            return cls("top", int(k))
        if spec.startswith("label:"):
            from .data_io import class_labels, read_data

            path = spec[6:]
            return cls("label", class_labels(read_data(path), path, count))
        if spec.lstrip("-").isdigit():
            if int(spec) < 0:
                raise ValueError(f"--target class must be >= 0, got {spec}")
            return cls("class", int(spec))
        raise ValueError(f"--target must be pred, label:FILE, a class K, all or top:K; got {spec!r}")

    @classmethod
    def from_option(cls, target, count=None):
        """A Target from ``--target``'s text (:meth:`from_command_line`, for
        ``count`` samples), or from any form :meth:`parse` takes: what the
        ``target`` keyword of ``lrpnb.explain_dataset`` accepts."""
        if isinstance(target, str):
            return cls.from_command_line(target, count)
        return cls.parse(target)

    @classmethod
    def from_toolbox(cls, number, classes):
        """A Target from an LRP Toolbox image list entry: -1 the predicted
        class, -2 the five best (of ``classes``), k >= 0 class k."""
        if number == -1:
            return cls("pred")
        if number == -2:
            return cls("top", min(5, classes))
        if number < 0:
            raise ValueError(f"a toolbox target is -1, -2 or a class >= 0, got {number}")
        return cls("class", int(number))

    # ------------------------------------------------------------ use
    @property
    def several(self):
        """Whether each sample has a target axis in the result ('all', top-k)."""
        return self.kind in ("all", "top")

    @property
    def per_sample(self):
        """Whether the target lists a class per sample (it is cut with the batch)."""
        return self.kind == "label"

    def rows(self, start, stop):
        """This target for samples start..stop of the batch it was given for."""
        if not self.per_sample:
            return self
        return Target("label", np.asarray(self.value)[start:stop])

    def classes(self, scores):
        """The (N, T) classes explained for class ``scores`` (N, C)."""
        N, C = scores.shape
        if self.kind == "all":
            return np.tile(np.arange(C), (N, 1))
        if self.kind == "top":
            if self.value > C:
                raise ValueError(f"target ('topk', k) needs 1 <= k <= {C}, got ('topk', {self.value})")
            return np.argsort(-scores, axis=1, kind="stable")[:, :self.value]
        if self.kind == "pred":
            return np.argmax(scores, axis=1)[:, None]
        target = np.asarray(self.value)
        target = np.broadcast_to(target, (N,)) if target.ndim == 0 else target
        if target.shape != (N,):
            raise ValueError(f"target has {target.shape[0]} entries for {N} samples")
        if target.min() < 0 or target.max() >= C:
            raise ValueError(f"target classes must lie in 0..{C - 1}, got {target.min()}..{target.max()}")
        return target[:, None]

    def describe(self):
        """The command line's spelling ('label' names no file: 'labels')."""
        return {"pred": "pred", "all": "all", "top": f"top:{self.value}", "class": str(self.value),
                "label": "labels"}[self.kind]


def target_classes(target, scores):
    """The (N, T) classes ``explain(X, target)`` explains, given the class
    ``scores`` (N, C) of X: any form :meth:`Target.parse` takes."""
    N = scores.shape[0]
    parsed = Target.parse(target)
    if parsed.kind == "label" and np.ndim(parsed.value) == 1 and len(parsed.value) != N:
        raise ValueError(f"target has {len(parsed.value)} entries for {N} samples")
    return parsed.classes(scores)

"""Names and parameters of the explanation methods.

Every LRP rule and gradient method is known by a canonical name; aliases map
onto it case-insensitively (the LRP Toolbox's spellings among them). A
:class:`Rule` is made (and checked) once, wherever a rule comes from (the
API, a composite, the command line, a toolbox formula type), and holds the
stabilizer policy; which kernels each layer family uses for it is in
``lrpnb/layers/<family>.py``, the numerics in the kernels. docs/rules.md
gives every formula.
"""
import math
import numbers

import numpy as np

from .rule_math import BACKWARD_DECONVNET, BACKWARD_GRADIENT, BACKWARD_GUIDED

#: alias (lower case) -> canonical name. ``None`` means 'simple'.
ALIASES = {
    None: "simple", "none": "simple", "simple": "simple",
    "epsilon": "epsilon", "eps": "epsilon",
    "alphabeta": "alphabeta", "alpha": "alphabeta",
    "flat": "flat",
    "ww": "ww", "w^2": "ww",
    "zplus": "zplus", "z+": "zplus",
    "gamma": "gamma",
    "zb": "zb", "zbox": "zb",
    # the product of two activations (lrpnb.layers.products.Mul): the
    # gate held constant (CP-LRP) or each factor half (AttnLRP's uniform rule)
    "constant_gate": "constant_gate", "gate": "constant_gate",
    "uniform": "uniform",
    "gradient": "gradient",
    "sensitivity": "sensitivity",
    "deconvnet": "deconvnet",
    "guided_backprop": "guided_backprop", "guided": "guided_backprop",
    "gradient_x_input": "gradient_x_input",
}

#: every canonical name, LRP rules first, in the order the help texts list them
RULE_NAMES = tuple(dict.fromkeys(ALIASES.values()))

#: gradient-based methods: they start from the one-hot target instead of its
#: score, and every layer passes the (modified) gradient back
GRADIENT_METHODS = ("gradient", "sensitivity", "deconvnet", "guided_backprop", "gradient_x_input")

#: the kernels' backward signal of each gradient method (lrpnb.rule_math)
BACKWARD_MODES = {"gradient": BACKWARD_GRADIENT, "sensitivity": BACKWARD_GRADIENT,
                  "gradient_x_input": BACKWARD_GRADIENT, "deconvnet": BACKWARD_DECONVNET,
                  "guided_backprop": BACKWARD_GUIDED}

#: the toolbox's stabilizer of the 'simple' rule on dense and convolution layers
SIMPLE_STABILIZER = 1e-16
#: the toolbox's stabilizer of the 'simple' rule on sum pooling layers
SUMPOOL_SIMPLE_STABILIZER = 1e-12
#: the constant added to (subtracted from) the alpha-beta rule's denominators
ALPHABETA_STABILIZER = 1e-16
#: zennit's stabilizer of the z+, gamma and z^B rules
ZENNIT_STABILIZER = 1e-6
#: the gamma rule's gamma when none is given (zennit's default)
DEFAULT_GAMMA = 0.25

_VALID = ", ".join(repr(name) for name in ALIASES)


def canonical_rule(rule):
    """Map a rule name (or None) to its canonical name; ValueError if unknown."""
    key = rule.lower() if isinstance(rule, str) else rule
    try:
        return ALIASES[key]
    except (KeyError, TypeError):
        raise ValueError(f"unknown LRP rule {rule!r}; valid rules are {_VALID}") from None


def _number(name, what, param):
    try:
        value = float(param)
    except (TypeError, ValueError):
        raise ValueError(f"the {name!r} rule's parameter ({what}) must be a number, got {param!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"the {name!r} rule's parameter ({what}) must be finite, got {param!r}")
    return value


def _bound(value, what):
    array = np.asarray(value, dtype=np.float64)
    if array.ndim > 1 or array.size == 0:
        raise ValueError(f"the 'zb' rule's {what} bound must be a number or a 1-d array of one per channel, "
                         f"got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"the 'zb' rule's {what} bound must be finite")
    return array


def _validate(rule, param):
    """(canonical name, validated parameter) of a rule and its parameter."""
    name = canonical_rule(rule)
    if not takes_parameter(name):
        if param is not None:
            raise ValueError(f"the {name!r} {'method' if name in GRADIENT_METHODS else 'rule'} takes no "
                             f"parameter, got {param!r}")
        return name, None
    if name == "gamma":
        gamma = DEFAULT_GAMMA if param is None else _number(name, "gamma", param)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {param!r}")
        return name, gamma
    if name == "zb":
        if param is None:
            raise ValueError("the 'zb' rule needs its bounds: param=(low, high)")
        if isinstance(param, (str, bytes, numbers.Number)) or len(param) != 2:
            raise ValueError(f"the 'zb' rule's parameter must be a pair (low, high), got {param!r}")
        low, high = _bound(param[0], "low"), _bound(param[1], "high")
        if np.any(low > high):
            raise ValueError(f"the 'zb' rule needs low <= high, got low={param[0]!r}, high={param[1]!r}")
        return name, (low, high)
    if name == "uniform":
        # the stabilizer of its products' epsilon-rule shares (MatMul); None: the default
        if param is None:
            return name, None
        value = _number(name, "epsilon", param)
        if value <= 0:
            raise ValueError(f"the 'uniform' rule's epsilon must be > 0, got {param!r}")
        return name, value
    what = "epsilon" if name == "epsilon" else "alpha"
    if param is None:
        raise ValueError(f"the {name!r} rule needs a parameter ({what}); got none")
    value = _number(name, what, param)
    if name == "epsilon" and value <= 0:
        raise ValueError(f"epsilon must be > 0, got {param!r}")
    if name == "alphabeta" and value < 1:
        raise ValueError(f"alpha must be >= 1 (alpha - beta = 1 with beta >= 0, Bach et al. 2015), "
                         f"got {param!r}")
    return name, value


class Rule(tuple):
    """An LRP rule or gradient method with its parameter, validated once.

    ``Rule(rule, param)`` takes any alias of :data:`ALIASES` (None is
    'simple'); 'epsilon' needs a finite epsilon > 0, 'alphabeta' a finite
    alpha >= 1 (beta = alpha - 1 >= 0), 'gamma' a finite gamma >= 0 (default
    0.25), 'uniform' optionally a finite epsilon > 0 (its products'
    stabilizer; None: the default of :meth:`epsilon`), 'zb' a pair (low,
    high) of bounds, each a number or one per input channel, low <= high.
    Every other rule takes no parameter: one given is
    an error, not silently ignored. A Rule given as ``rule`` is returned as
    it is.

    A Rule is a frozen ``(name, param)`` pair (it unpacks and compares as
    one) that also knows the stabilizers each layer family uses with it:
    the policy written once for every layer.
    """

    __slots__ = ()

    def __new__(cls, rule=None, param=None):
        if isinstance(rule, Rule):
            if param is not None:
                raise ValueError(f"a Rule carries its parameter; got {rule!r} and param={param!r}")
            return rule
        return super().__new__(cls, _validate(rule, param))

    def __getnewargs__(self):
        return tuple(self)

    @classmethod
    def unchecked(cls, name, param=None):
        """A Rule of a canonical ``name`` and ``param`` taken as they are:
        for calling a layer's kernels directly with parameters outside the
        ranges explanations use (the toolbox's alpha-beta with alpha < 1)."""
        return super().__new__(cls, (canonical_rule(name), param))

    @property
    def name(self):
        """The canonical name ('simple', 'epsilon', ..., 'gradient_x_input')."""
        return self[0]

    @property
    def param(self):
        """The validated parameter (a float, (low, high) arrays for zb, or None)."""
        return self[1]

    def __repr__(self):
        return f"Rule({self.name!r})" if self.param is None else f"Rule({self.name!r}, {self.param!r})"

    @property
    def is_gradient(self):
        """Whether this is a gradient method: it starts from the one-hot
        target instead of its score, and every layer passes a (modified)
        gradient back."""
        return self.name in GRADIENT_METHODS

    @property
    def backward_mode(self):
        """For a gradient method, the signal every layer passes back
        (:data:`lrpnb.rule_math.BACKWARD_GRADIENT`, ``BACKWARD_DECONVNET`` or
        ``BACKWARD_GUIDED``); None for the LRP rules."""
        return BACKWARD_MODES.get(self.name)

    def check_dtype(self, dtype):
        """ValueError unless the parameter holds in ``dtype`` (the data's
        float32 or float64): epsilon > 0 and finite once cast (1e-300 is 0
        in float32), alpha and beta = 1 - alpha, gamma and the z^B bounds
        finite. Products that overflow later (alpha times a large score)
        are caught by the check of the relevance for non-finite values."""
        dtype = np.dtype(dtype)
        if self.param is None or dtype.kind != "f":
            return
        if self.name == "zb":
            values = [("low bound", self.param[0]), ("high bound", self.param[1])]
        elif self.name == "alphabeta":
            values = [("alpha", self.param), ("beta = 1 - alpha", 1 - self.param)]
        else:
            values = [("epsilon" if self.name == "uniform" else self.name, self.param)]
        with np.errstate(over="ignore", under="ignore"):
            for what, value in values:
                cast = np.asarray(value, dtype=np.float64).astype(dtype)
                if not np.isfinite(cast).all():
                    raise ValueError(f"the {self.name!r} rule's {what} ({value!r}) overflows {dtype} (largest "
                                     f"{np.finfo(dtype).max:.3g}); use a smaller value or float64 data")
                if self.name in ("epsilon", "uniform") and not cast > 0:
                    raise ValueError(f"the {self.name!r} rule's epsilon ({value!r}) is 0 in {dtype} (smallest "
                                     f"{np.finfo(dtype).smallest_subnormal:.3g}); use a larger value or "
                                     f"float64 data")

    def epsilon(self, simple=SIMPLE_STABILIZER, other=ZENNIT_STABILIZER):
        """The stabilizer of an epsilon-rule division under this rule: the
        parameter of 'epsilon' (and of 'uniform' where one is given),
        ``simple`` for 'simple' (the toolbox's 1e-16), ``other`` for every
        other LRP rule (zennit's 1e-6, the Norm rule of its sums and
        average pools)."""
        if self.name == "epsilon" or (self.name == "uniform" and self.param is not None):
            return self.param
        return simple if self.name == "simple" else other

    def paired(self):
        """(p1, p2, tiny) of the sign-paired kernels for 'alphabeta' (alpha,
        beta = 1 - alpha as the toolbox, 1e-16) and 'zplus' (1, 0, zennit's
        1e-6)."""
        if self.name == "alphabeta":
            return self.param, 1 - self.param, ALPHABETA_STABILIZER
        if self.name == "zplus":
            return 1.0, 0.0, ZENNIT_STABILIZER
        raise ValueError(f"the {self.name!r} rule is not sign-paired")


def resolve(rule, param):
    """Validate a (rule, param) pair: the :class:`Rule`, which unpacks as
    ``(canonical_name, param)``."""
    return Rule(rule, param)


def takes_parameter(rule):
    """Whether the rule (any alias) has a parameter: epsilon, alphabeta, gamma and zb do, and
    uniform (an optional epsilon)."""
    return canonical_rule(rule) in ("epsilon", "alphabeta", "gamma", "zb", "uniform")


#: zennit's Norm rule: the epsilon rule with its fixed stabilizer 1e-6, which
#: the joins (Add, average pools) take under one rule for the whole network
NORM = Rule("epsilon", ZENNIT_STABILIZER)

"""Names and parameters of the LRP rules, as the LRP Toolbox spells them.

Every rule is known by a canonical name; the toolbox's aliases map onto it
case-insensitively. The numerics of each rule live in the kernels
(``lrpnb/kernels/<layer family>.py``); this module only validates what a user
asked for and holds the toolbox's fixed stabilizers.
"""
import math

#: alias (lower case) -> canonical rule name. ``None`` means 'simple'.
ALIASES = {
    None: "simple",
    "none": "simple",
    "simple": "simple",
    "epsilon": "epsilon",
    "eps": "epsilon",
    "alphabeta": "alphabeta",
    "alpha": "alphabeta",
    "flat": "flat",
    "ww": "ww",
    "w^2": "ww",
}

#: the toolbox's stabilizer of the 'simple' rule on dense and convolution layers
SIMPLE_STABILIZER = 1e-16
#: the toolbox's stabilizer of the 'simple' rule on sum pooling layers
SUMPOOL_SIMPLE_STABILIZER = 1e-12
#: the constant added to (subtracted from) the alpha-beta rule's denominators
ALPHABETA_STABILIZER = 1e-16

_VALID = "None, 'none', 'simple', 'epsilon', 'eps', 'alphabeta', 'alpha', 'flat', 'ww', 'w^2'"


def canonical_rule(rule):
    """Map a rule name (or None) to its canonical name; ValueError if unknown."""
    key = rule.lower() if isinstance(rule, str) else rule
    try:
        return ALIASES[key]
    except (KeyError, TypeError):
        raise ValueError(f"unknown LRP rule {rule!r}; valid rules are {_VALID}") from None


def resolve(rule, param):
    """Validate a (rule, param) pair and return ``(canonical_name, param)``.

    'epsilon' needs a finite epsilon > 0 and 'alphabeta' a finite alpha; the
    parameter of 'simple', 'flat' and 'ww' is ignored (returned as None), as
    in the toolbox.
    """
    name = canonical_rule(rule)
    if name not in ("epsilon", "alphabeta"):
        return name, None
    what = "epsilon" if name == "epsilon" else "alpha"
    if param is None:
        raise ValueError(f"the {name!r} rule needs a parameter ({what}); got none")
    try:
        value = float(param)
    except (TypeError, ValueError):
        raise ValueError(f"the {name!r} rule's parameter ({what}) must be a number, got {param!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"the {name!r} rule's parameter ({what}) must be finite, got {param!r}")
    if name == "epsilon" and value <= 0:
        raise ValueError(f"epsilon must be > 0, got {param!r}")
    return name, value

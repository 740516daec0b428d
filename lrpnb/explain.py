"""The explain passes over a network's graph.

A forward pass keeps every value (``trace``) or only those still to be read
(``scores``); the relevance pass (``backward``) walks the nodes from the
last, each layer family applying its rule, and sums the relevance a value
receives from several consumers. ``explain`` runs them for a batch and its
targets: the batch in parts that fit the device, several targets as
repeated rows, the layer sums and the kept nodes' relevance gathered on the
way (Bach et al., PLOS ONE 10(7), 2015; the LRP Toolbox's
``Sequential.lrp``, Lapuschkin et al., JMLR 17(114), 2016).
"""
import numbers

import numpy as np

from .inputs import network_input
from .kernels import single_threaded_blas
from .rules import NORM, Rule
from .targets import Target

__all__ = ["Explanation", "explain", "trace", "scores", "backward", "finish", "plan"]


class Explanation(tuple):
    """What ``Network.explain`` returns when asked for more than the
    relevance: a tuple of the parts asked for, in the order (relevance,
    scores, layer_sums, layers), so ``relevance, scores = net.explain(X,
    return_scores=True)`` unpacks as ever; each part is also an attribute
    (None where not asked for)."""

    def __new__(cls, relevance, scores=None, layer_sums=None, layers=None):
        parts = [part for part in (relevance, scores, layer_sums, layers) if part is not None]
        explanation = super().__new__(cls, parts)
        explanation.relevance, explanation.scores = relevance, scores
        explanation.layer_sums, explanation.layers = layer_sums, layers
        return explanation

    def __getnewargs__(self):
        return self.relevance, self.scores, self.layer_sums, self.layers


def trace(net, X, count):
    """Forward through the first ``count`` nodes, keeping every value: X
    first, then each node's output."""
    net.output_shapes(X.shape, net.layers[:count])
    values = [X]
    with single_threaded_blas():
        for k in range(count):
            values.append(net.layers[k].forward(net.node_inputs(values, k), net.backend))
    return values


def scores(net, X):
    """The class scores of X (already on the device and checked): forward
    through the scoring nodes, each value dropped after its last reader."""
    count = net.scoring_count()
    net.output_shapes(X.shape, net.layers[:count])
    last_use = {}
    for k in range(count):
        for source in net.sources[k]:
            last_use[source] = k
    values = {0: X}
    with single_threaded_blas():
        for k in range(count):
            values[k + 1] = net.layers[k].forward(net.node_inputs(values, k), net.backend)
            for source in net.sources[k]:
                if last_use[source] == k:
                    values.pop(source, None)
    return values[count]


def plan(net, count, rule, param, composite):
    """(the Rule of each of the first ``count`` nodes, the whole-network
    gradient method's name or None): from ``rule``/``param``, a
    ``composite``, or (neither given) the layers' presets.

    Under one LRP rule (``rule``, or presets not set on the layer itself)
    the joins (layers whose ``join`` is true: Add, the average pools) take
    :data:`~lrpnb.rules.NORM`; a preset set on a join itself is kept, and
    gradient methods apply everywhere."""
    if composite is not None:
        if rule is not None or param is not None:
            raise ValueError("give either a rule (with its param) or a composite, not both")
        if not hasattr(composite, "rules"):
            raise TypeError(f"composite must be an lrpnb composite, got {type(composite).__name__}")
        return composite.rules(net.layers)[:count], composite.method
    if rule is None and param is None:
        rules = [(layer.preset, layer.lrp_explicit) for layer in net.layers[:count]]
    else:
        chosen = Rule(rule, param)
        if chosen.is_gradient:
            return [chosen] * count, chosen.name
        rules = [(chosen, False)] * count
    return [NORM if layer.join and not explicit and not chosen.is_gradient else chosen
            for layer, (chosen, explicit) in zip(net.layers, rules)], None


def backward(net, activations, R, count, rules, sums=None, keep=None):
    """Relevance at the network's input for relevance R at the output of
    node ``count - 1``.

    With a list ``sums``, each sample's relevance summed at the output of
    every node is appended to it, last node first (on the host). With a
    dict ``keep`` of value indices, the relevance at those values (k + 1:
    node k's output) is stored in it. The relevance a value receives from
    several nodes is summed, in node order from the last.
    """
    backend = net.backend
    received = [None] * len(activations)
    received[count] = R
    with single_threaded_blas():
        for k in range(count - 1, -1, -1):
            R, received[k + 1] = received[k + 1], None
            if sums is not None:
                sums.append(backend.to_host(backend.activations.sample_sums(R)) if R is not None
                            else np.zeros(activations[0].shape[0]))
            if keep is not None and k + 1 in keep:
                keep[k + 1] = R
            if R is None:  # nothing of the output depends on this node
                continue
            layer = net.layers[k]
            out = layer.relevance(net.node_inputs(activations, k), activations[k + 1], R, rules[k],
                                  backend=backend)
            for source, part in zip(net.sources[k], [out] if layer.arity == 1 else out):
                received[source] = part if received[source] is None else \
                    backend.tensors.add_forward([received[source], part])
    R = received[0]
    if R is None:  # an output that does not depend on the input
        R = backend.put(np.zeros(activations[0].shape, dtype=activations[0].dtype))
    return R


def finish(backend, method, X, G):
    """The last step of a gradient method: the norm over channels for
    sensitivity, the product with the input for gradient x input."""
    if method == "sensitivity":
        if G.ndim == 2:  # vectors have no channel axis: each value is its own norm
            return backend.activations.channel_norm(G.reshape(G.shape + (1,))).reshape(G.shape)
        return backend.activations.channel_norm(G)
    if method == "gradient_x_input":
        return backend.activations.times_input(X, G)
    return G


def kept_values(net, keys, count):
    """{value index: node name} of the nodes explain(layers=keys) asks for."""
    if keys is None:
        return {}
    if isinstance(keys, (str, numbers.Integral)):
        raise TypeError(f"layers must be a list of node names or indices, got {keys!r}")
    keep = {}
    for key in keys:
        node = net.node(key)
        value = net.value_index(node.name)
        if value > count:
            raise ValueError(f"node {node.name!r} is the final SoftMax, which explain() leaves out")
        keep[value] = node.name
    return keep


def batch_parts(net, X, count, target):
    """(n0, n1) parts of the batch X to explain one after the other: on a
    memory-bound device (the GPU), as many samples at a time as fit half of
    its free memory with everything a pass keeps (activations, one copy per
    target for several targets, and the relevance of two nodes at a time);
    elsewhere all of them."""
    N = X.shape[0]
    if not net.backend.memory_bound:
        return [(0, N)]
    shapes = [tuple(X.shape)] + net.output_shapes(X.shape, net.layers[:count])
    classes = shapes[-1][1] if len(shapes[-1]) == 2 else 1
    targets = classes if target.several else 1  # top-k: k <= classes
    largest = max(int(np.prod(shape[1:])) for shape in shapes)
    per_sample = (sum(int(np.prod(shape[1:])) for shape in shapes) * (1 + targets)
                  + 2 * largest * targets) * X.dtype.itemsize
    size = max(1, min(N, net.backend.free_memory() // 2 // per_sample))
    return [(n0, min(n0 + size, N)) for n0 in range(0, N, size)]


def explain(net, X, target=None, rule=None, param=None, composite=None, return_scores=False,
            return_layer_sums=False, layers=None):
    """``Network.explain`` (see there): the relevance, or an Explanation."""
    backend = net.backend
    X, kind = network_input(net, X)
    target = Target.parse(target)
    count = net.scoring_count()
    rules, method = plan(net, count, rule, param, composite)
    for chosen in {id(chosen): chosen for chosen in rules}.values():
        chosen.check_dtype(X.dtype)
    keep = kept_values(net, layers, count)
    if target.per_sample and np.ndim(target.value) == 1 and len(target.value) != X.shape[0]:
        raise ValueError(f"target has {len(target.value)} entries for {X.shape[0]} samples")
    pieces = [_explain_part(net, X[n0:n1], target.rows(n0, n1), count,
                            rules, method, return_layer_sums, keep, n0)
              for n0, n1 in batch_parts(net, X, count, target)]
    if len(pieces) == 1:
        relevance, class_scores, sums, kept = pieces[0]
    else:
        relevance = backend.concatenate([piece[0] for piece in pieces])
        class_scores = np.concatenate([piece[1] for piece in pieces])
        sums = np.concatenate([piece[2] for piece in pieces]) if return_layer_sums else None
        kept = {name: backend.concatenate([piece[3][name] for piece in pieces]) for name in pieces[0][3]}
    bad = backend.arrays.first_nonfinite_sample(relevance)
    if bad is not None:
        raise ValueError(f"the relevance of sample {bad} is not finite (overflow in the relevance pass? "
                         f"a rule parameter too large for {X.dtype}, or values too large for it)")
    relevance = backend.output(relevance, kind)
    if not (return_scores or return_layer_sums or layers is not None):
        return relevance
    return Explanation(relevance, class_scores if return_scores else None, sums,
                       {name: backend.output(value, kind) for name, value in kept.items()}
                       if layers is not None else None)


def check_scores(class_scores, first=0):
    """ValueError naming the first samples (counted from ``first``) whose
    class scores are NaN or infinite: an overflow inside the network would
    otherwise give a map of NaN without a word."""
    if np.isfinite(class_scores).all():
        return
    bad = np.flatnonzero(~np.isfinite(class_scores.reshape(class_scores.shape[0], -1)).all(axis=1)) + first
    named = ", ".join(str(n) for n in bad[:10]) + (f" (and {len(bad) - 10} more)" if len(bad) > 10 else "")
    raise ValueError(f"the scores of sample{'s' if len(bad) > 1 else ''} {named} are not finite "
                     f"(overflow inside the network?)")


def _explain_part(net, X, target, count, rules, method, layer_sums, keep, first=0):
    """(relevance on the device, scores on the host, layer sums on the host
    or None, {name: relevance at that node's output}) of one part of a
    batch whose first sample is sample ``first`` of the whole; ``keep``
    maps value indices to node names."""
    backend = net.backend
    activations = trace(net, X, count)
    class_scores = backend.to_host(activations[-1])
    if class_scores.ndim != 2:
        raise ValueError(f"explain() needs class scores of shape (N, C); "
                         f"the network outputs shape {class_scores.shape}")
    check_scores(class_scores, first)
    targets = target.classes(class_scores)
    N, T = targets.shape
    # several targets share the forward pass; their relevance passes run as
    # batches of the samples repeated once per target, as many rows at a
    # time as the backend takes (on the CPU, larger batches fall out of
    # cache and cost more than they save)
    group = backend.target_group(N, T)
    parts, sum_parts, kept_parts = [], [], {value: [] for value in keep}
    for first in range(0, T, group):
        chosen = targets[:, first:first + group].reshape(-1)
        G = len(chosen) // N
        repeated = activations if G == 1 else [backend.repeat(a, G) for a in activations]
        rows = np.arange(N * G)
        start = np.zeros((N * G, class_scores.shape[1]), dtype=class_scores.dtype)
        start[rows, chosen] = 1 if method else np.repeat(class_scores, G, axis=0)[rows, chosen]
        sums = [] if layer_sums else None
        kept = dict.fromkeys(keep) if keep else None
        relevance = backward(net, repeated, backend.put(start), count, rules, sums, kept)
        relevance = finish(backend, method, repeated[0], relevance)
        parts.append(relevance.reshape((N, G) + tuple(relevance.shape[1:])))
        for value in keep:
            kept_parts[value].append(kept[value].reshape((N, G) + tuple(kept[value].shape[1:])))
        if layer_sums:
            # the nodes' outputs came last node first; the input's sum is of the answer
            sums = [backend.to_host(backend.activations.sample_sums(relevance))] + sums[::-1]
            sum_parts.append(np.stack(sums, axis=1).reshape(N, G, len(sums)))
    join = (lambda pieces: pieces[0]) if len(parts) == 1 else (lambda pieces: np.concatenate(pieces, axis=1))
    relevance = join(parts)
    kept = {keep[value]: join(pieces) for value, pieces in kept_parts.items()}
    sums = join(sum_parts) if layer_sums else None
    if not target.several:
        relevance = relevance.reshape((N,) + tuple(relevance.shape[2:]))
        kept = {name: value.reshape((N,) + tuple(value.shape[2:])) for name, value in kept.items()}
        sums = None if sums is None else sums[:, 0]
    return relevance, class_scores, sums, kept

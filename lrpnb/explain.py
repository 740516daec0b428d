"""The explain passes over a network's graph.

A forward pass keeps every value (``trace``) or only those still to be read
(``scores``); the relevance pass (``backward``) walks the nodes from the
last, each layer family applying its rule, and sums the relevance a value
receives from several consumers. ``explain`` runs them for a batch and its
targets: the batch in parts that fit the device, several targets as
repeated rows, the layer sums and the kept nodes' relevance gathered on the
way (Bach et al., PLOS ONE 10(7), 2015; the LRP Toolbox's
``Sequential.lrp``, Lapuschkin et al., JMLR 17(114), 2016).

A network's values are its inputs, in order, then each node's output. Only
the values that depend on an explained input (``Network.explained``)
receive relevance: the path of a transformer's attention mask gets none.
"""
import numbers

import numpy as np

from .inputs import network_inputs
from .kernels import single_threaded_blas
from .layers import Weighted
from .rules import NORM, Rule
from .targets import Target

__all__ = ["Explanation", "explain", "trace", "scores", "backward", "finish", "plan", "lrp", "index_graph",
           "input_names", "parameter_gradients"]


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


def input_names(value, what, allowed=None):
    """``value`` (a name or a sequence of names) as a tuple of distinct
    non-empty strings, each one of ``allowed`` (a network's inputs) where
    given."""
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names or not all(isinstance(name, str) and name for name in names) or len(set(names)) < len(names):
        raise ValueError(f"{what} must be one or more distinct non-empty names, got {value!r}")
    unknown = [name for name in names if allowed is not None and name not in allowed]
    if unknown:
        raise ValueError(f"{what}: {unknown[0]!r} is not an input of the network; its inputs: "
                         f"{', '.join(map(repr, allowed))}")
    return names


def index_graph(inputs, explained, nodes):
    """(each node's input value indices, {name: value index}, whether each
    value depends on an explained input) of a graph whose values are the
    ``inputs``, then the ``nodes``' outputs in order. Raises ValueError on
    a name used twice or a node reading a value not made before it."""
    first = len(inputs)
    index = {name: value for value, name in enumerate(inputs)}
    sources = []
    for k, node in enumerate(nodes):
        if node.name in index:
            what = "an input's name" if index[node.name] < first else "used twice"
            raise ValueError(f"node {k}: the name {node.name!r} is {what}; give the node another")
        missing = [name for name in node.inputs if name not in index]
        if missing:
            raise ValueError(f"node {node.name!r} reads {', '.join(map(repr, missing))}, which no earlier "
                             f"node outputs and no input is named (nodes must come in topological order; "
                             f"the inputs: {', '.join(map(repr, inputs))})")
        sources.append([index[name] for name in node.inputs])
        index[node.name] = first + k
    relevant = [name in explained for name in inputs]
    for source in sources:
        relevant.append(any(relevant[value] for value in source))
    return sources, index, relevant


def explained_values(net):
    """The value indices of the explained inputs, in the order of ``net.inputs``."""
    return [value for value, name in enumerate(net.inputs) if name in net.explained]


def _as_list(X):
    return list(X) if isinstance(X, (list, tuple)) else [X]


def trace(net, X, count):
    """Forward through the first ``count`` nodes, keeping every value: the
    inputs first (``X``, an array, or a list in the order of
    ``net.inputs``), then each node's output."""
    values = _as_list(X)
    net.output_shapes([tuple(x.shape) for x in values], net.layers[:count])
    with single_threaded_blas():
        for k in range(count):
            values.append(net.layers[k].forward(net.node_inputs(values, k), net.backend))
    return values


def scores(net, X):
    """The class scores of X (already on the device and checked; an array
    or a list of the inputs): forward through the scoring nodes, each value
    dropped after its last reader."""
    X = _as_list(X)
    count = net.scoring_count()
    net.output_shapes([tuple(x.shape) for x in X], net.layers[:count])
    first = len(X)
    last_use = {}
    for k in range(count):
        for source in net.sources[k]:
            last_use[source] = k
    values = dict(enumerate(X))
    with single_threaded_blas():
        for k in range(count):
            values[first + k] = net.layers[k].forward(net.node_inputs(values, k), net.backend)
            for source in net.sources[k]:
                if last_use[source] == k:
                    values.pop(source, None)
    return values[first - 1 + count]


def output_position(shape, position, default=-1):
    """The token whose logits are the class scores for an output of
    ``shape`` (N, T, V): ``position`` (``default`` where None) as an index
    0..T-1; None for outputs (N, C), where a position is an error."""
    if len(shape) == 3:
        position = default if position is None else position
        if position is None:
            return None
        tokens = shape[1]
        if not isinstance(position, numbers.Integral) or isinstance(position, bool) \
                or not -tokens <= position < tokens:
            raise ValueError(f"position must be a token index -{tokens}..{tokens - 1} of the network's output "
                             f"(N, T, V) = {tuple(shape)}, got {position!r}")
        return int(position) % tokens
    if position is not None:
        raise ValueError(f"position={position!r} names a token of a language model's logits (N, T, V); this "
                         f"network outputs shape {tuple(shape)}: leave position out")
    return None


def answer_output(backend, out, position, kind):
    """The network's output ``out`` as the caller's kind of array, at token
    ``position`` only where one is given."""
    position = output_position(tuple(out.shape), position, default=None)
    if position is not None:
        out = backend.put(np.ascontiguousarray(backend.to_host(out)[:, position]))
    return backend.output(out, kind)


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
    """Relevance at the explained inputs (a list, in the order of
    ``net.inputs``) for relevance R at the output of node ``count - 1``.

    With a list ``sums``, each sample's relevance summed at the output of
    every node is appended to it, last node first (on the host). With a
    dict ``keep`` of value indices, the relevance at those values (I + k:
    node k's output) is stored in it. The relevance a value receives from
    several nodes is summed, in node order from the last; values that
    depend on no explained input receive none.
    """
    backend = net.backend
    first, relevant = len(net.inputs), net.relevant_values
    received = [None] * len(activations)
    received[first - 1 + count] = R if relevant[first - 1 + count] else None
    with single_threaded_blas():
        for k in range(count - 1, -1, -1):
            R, received[first + k] = received[first + k], None
            if sums is not None:
                sums.append(backend.to_host(backend.activations.sample_sums(R)) if R is not None
                            else np.zeros(activations[0].shape[0]))
            if keep is not None and first + k in keep:
                keep[first + k] = R if R is not None else _zeros(backend, activations[first + k])
            if R is None:  # nothing of the output depends on this node, or it on no explained input
                continue
            layer = net.layers[k]
            out = layer.relevance(net.node_inputs(activations, k), activations[first + k], R, rules[k],
                                  backend=backend)
            for source, part in zip(net.sources[k], [out] if layer.arity == 1 else out):
                if not relevant[source]:
                    continue  # a share to a value of no explained input (an attention mask) is dropped
                received[source] = part if received[source] is None else \
                    backend.tensors.add_forward([received[source], part])
    # an input the output does not depend on gets zeros
    return [received[value] if received[value] is not None else _zeros(backend, activations[value])
            for value in explained_values(net)]


def _zeros(backend, like):
    return backend.put(np.zeros(tuple(like.shape), dtype=like.dtype))


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


def lrp(net, activations, R, rule, param, kinds, named):
    """``Network.lrp``: the relevance at the explained inputs of a forward
    pass's ``activations`` for relevance ``R`` at its output, answered as
    the inputs were given (``kinds``; a dict where ``named``)."""
    backend = net.backend
    out = activations[-1]
    if not isinstance(R, np.ndarray) and not backend.arrays.is_gpu_array(R):
        R = np.asarray(R)
    if isinstance(R, np.ndarray) and R.dtype != out.dtype and R.dtype.kind in "biuf":
        R = R.astype(out.dtype)
    R, kind = backend.input(R, "R")
    if R.shape != out.shape:
        raise ValueError(f"R must have the shape of the last output {out.shape}, got {R.shape}")
    if R.dtype != out.dtype:
        raise ValueError(f"R must have the dtype of the last output ({out.dtype}), got {R.dtype}")
    rules, method = plan(net, len(net.layers), rule, param, None)
    relevance = backward(net, activations, R, len(net.layers), rules)
    relevance = [finish(backend, method, activations[value], part)
                 for value, part in zip(explained_values(net), relevance)]
    return answer(net, relevance, [kind] * len(kinds) if len(kinds) == 1 else kinds, named)


def answer(net, relevance, kinds, named):
    """The relevance of the explained inputs (device arrays, in the order of
    ``net.inputs``) as the caller gave the inputs: a dict {name: relevance}
    for a dict of inputs, else the one array; each as its input's kind."""
    values = explained_values(net)
    if named:
        return {net.inputs[value]: net.backend.output(part, kinds[value]) for value, part in zip(values, relevance)}
    return net.backend.output(relevance[0], kinds[values[0]])


def parameter_gradients(net, X, loss):
    """``Network.parameter_gradients`` of a sequential network (see there)."""
    backend = net.backend
    X, _ = backend.input(X)
    count = net.scoring_count()
    activations = trace(net, X, count)
    value, G = loss(backend.to_host(activations[-1]))
    G = backend.put(np.ascontiguousarray(G, dtype=X.dtype))
    gradients = []
    gradient = Rule("gradient")
    with single_threaded_blas():
        for k in range(count - 1, -1, -1):
            layer, inputs = net.layers[k], activations[k]
            if isinstance(layer, Weighted):
                dW, dB = layer.parameter_gradient(inputs, G, backend)
                gradients.append((layer, backend.to_host(dW), backend.to_host(dB)))
            if k > 0:
                G = layer.relevance(inputs, activations[k + 1], G, gradient, backend=backend)
    return value, gradients[::-1]


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
        if value >= len(net.inputs) + count:
            raise ValueError(f"node {node.name!r} is the final SoftMax, which explain() leaves out")
        keep[value] = node.name
    return keep


def batch_parts(net, X, count, target):
    """(n0, n1) parts of the batch X (an array, or a list of the inputs) to
    explain one after the other: on a memory-bound device (the GPU), as
    many samples at a time as fit half of its free memory with everything a
    pass keeps (activations, one copy per target for several targets, and
    the relevance of two nodes at a time); elsewhere all of them."""
    X = _as_list(X)
    N = X[0].shape[0]
    if not net.backend.memory_bound:
        return [(0, N)]
    given = [tuple(x.shape) for x in X]
    shapes = given + net.output_shapes(given, net.layers[:count])
    classes = shapes[-1][-1] if len(shapes[-1]) in (2, 3) else 1
    targets = classes if target.several else 1  # top-k: k <= classes
    largest = max(int(np.prod(shape[1:])) for shape in shapes)
    per_sample = (sum(int(np.prod(shape[1:])) for shape in shapes) * (1 + targets)
                  + 2 * largest * targets) * X[0].dtype.itemsize
    size = max(1, min(N, net.backend.free_memory() // 2 // per_sample))
    return [(n0, min(n0 + size, N)) for n0 in range(0, N, size)]


def explain(net, X, target=None, rule=None, param=None, composite=None, return_scores=False,
            return_layer_sums=False, layers=None, dtype=None, position=None):
    """``Network.explain`` (see there): the relevance, or an Explanation."""
    backend = net.backend
    X, kinds, named = network_inputs(net, X, dtype)
    target = Target.parse(target)
    count = net.scoring_count()
    rules, method = plan(net, count, rule, param, composite)
    for chosen in {id(chosen): chosen for chosen in rules}.values():
        chosen.check_dtype(X[0].dtype)
    keep = kept_values(net, layers, count)
    N = X[0].shape[0]
    if target.per_sample and np.ndim(target.value) == 1 and len(target.value) != N:
        raise ValueError(f"target has {len(target.value)} entries for {N} samples")
    shapes = net.output_shapes([tuple(x.shape) for x in X], net.layers[:count])
    out_shape = shapes[-1] if shapes else tuple(X[-1].shape)
    position = output_position(out_shape, position)
    if len(out_shape) not in (2, 3):
        raise ValueError(f"explain() needs class scores of shape (N, C), or a language model's logits "
                         f"(N, T, V); the network outputs shape {out_shape}")
    pieces = [_explain_part(net, [x[n0:n1] for x in X], target.rows(n0, n1), count,
                            rules, method, return_layer_sums, keep, position, n0)
              for n0, n1 in batch_parts(net, X, count, target)]
    if len(pieces) == 1:
        relevance, class_scores, sums, kept = pieces[0]
    else:
        relevance = [backend.concatenate([piece[0][i] for piece in pieces]) for i in range(len(pieces[0][0]))]
        class_scores = np.concatenate([piece[1] for piece in pieces])
        sums = np.concatenate([piece[2] for piece in pieces]) if return_layer_sums else None
        kept = {name: backend.concatenate([piece[3][name] for piece in pieces]) for name in pieces[0][3]}
    for part in relevance:
        bad = backend.arrays.first_nonfinite_sample(part)
        if bad is not None:
            raise ValueError(f"the relevance of sample {bad} is not finite (overflow in the relevance pass? "
                             f"a rule parameter too large for {X[0].dtype}, or values too large for it)")
    relevance = answer(net, relevance, kinds, named)
    if not (return_scores or return_layer_sums or layers is not None):
        return relevance
    return Explanation(relevance, class_scores if return_scores else None, sums,
                       {name: backend.output(value, kinds[0]) for name, value in kept.items()}
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


def _start(out, class_scores, chosen, repeats, method, position):
    """The relevance (LRP: the target's score) or gradient (1) a pass
    starts from at the output ``out``: zero but at each row's chosen class
    (at token ``position`` of logits (N, T, V))."""
    rows = np.arange(len(chosen))
    start = np.zeros((len(chosen),) + tuple(out.shape[1:]), dtype=class_scores.dtype)
    value = 1 if method else np.repeat(class_scores, repeats, axis=0)[rows, chosen]
    if position is None:
        start[rows, chosen] = value
    else:
        start[rows, position, chosen] = value
    return start


def _explain_part(net, X, target, count, rules, method, layer_sums, keep, position, first=0):
    """(relevance of each explained input on the device, scores on the
    host, layer sums on the host or None, {name: relevance at that node's
    output}) of one part of a batch (X: the inputs' parts) whose first
    sample is sample ``first`` of the whole; ``keep`` maps value indices
    to node names."""
    backend = net.backend
    activations = trace(net, X, count)
    class_scores = backend.to_host(activations[-1])
    if position is not None:
        class_scores = np.ascontiguousarray(class_scores[:, position])
    check_scores(class_scores, first)
    targets = target.classes(class_scores)
    N, T = targets.shape
    inputs = explained_values(net)
    # several targets share the forward pass; their relevance passes run as
    # batches of the samples repeated once per target, as many rows at a
    # time as the backend takes (on the CPU, larger batches fall out of
    # cache and cost more than they save)
    group = backend.target_group(N, T)
    parts, sum_parts, kept_parts = [[] for _ in inputs], [], {value: [] for value in keep}
    for lowest in range(0, T, group):
        chosen = targets[:, lowest:lowest + group].reshape(-1)
        G = len(chosen) // N
        repeated = activations if G == 1 else [backend.repeat(a, G) for a in activations]
        start = _start(activations[-1], class_scores, chosen, G, method, position)
        sums = [] if layer_sums else None
        kept = dict.fromkeys(keep) if keep else None
        relevance = backward(net, repeated, backend.put(start), count, rules, sums, kept)
        relevance = [finish(backend, method, repeated[value], part) for value, part in zip(inputs, relevance)]
        for pieces, part in zip(parts, relevance):
            pieces.append(part.reshape((N, G) + tuple(part.shape[1:])))
        for value in keep:
            kept_parts[value].append(kept[value].reshape((N, G) + tuple(kept[value].shape[1:])))
        if layer_sums:
            # the nodes' outputs came last node first; the inputs' sum is of the answer
            total = sum(backend.to_host(backend.activations.sample_sums(part)) for part in relevance)
            sums = [total] + sums[::-1]
            sum_parts.append(np.stack(sums, axis=1).reshape(N, G, len(sums)))
    join = (lambda pieces: pieces[0]) if len(parts[0]) == 1 else (lambda pieces: np.concatenate(pieces, axis=1))
    relevance = [join(pieces) for pieces in parts]
    kept = {keep[value]: join(pieces) for value, pieces in kept_parts.items()}
    sums = join(sum_parts) if layer_sums else None
    if not target.several:
        relevance = [part.reshape((N,) + tuple(part.shape[2:])) for part in relevance]
        kept = {name: value.reshape((N,) + tuple(value.shape[2:])) for name, value in kept.items()}
        sums = None if sums is None else sums[:, 0]
    return relevance, class_scores, sums, kept

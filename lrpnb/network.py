"""The Network: layers in a chain or nodes of a graph, and its public passes.

This module holds the model's structure (``Node``, ``Network``): the graph,
the device it runs on, the rule presets and the shapes. The passes are in
``lrpnb.explain``, the layers (and each family's rules) in ``lrpnb.layers``,
the kernels in ``lrpnb.kernels`` and their GPU twins; this module does no
numerics of its own. The semantics are those of the LRP Toolbox
(Lapuschkin et al., JMLR 17(114), 2016): images are (N, H, W, D), vectors
(N, D), and ``Network.lrp`` is its ``Sequential.lrp``. A tensor read by
several nodes receives the sum of their relevance. A graph may have several
inputs (a transformer's token ids and attention mask), given as a dict name
-> array; the values of a graph are its inputs, in order, then each node's
output.
"""
import numbers

from . import explain as passes
from .backends import CPU_TARGET_ROWS as TARGET_ROWS  # noqa: F401  (lrpnb.network.TARGET_ROWS)
from .backends import backend
from .inputs import network_inputs, weights_dtype
from .layers import (LRN, Add, AveragePool, BatchNorm, Concat, Convolution, Flatten, GlobalAveragePool,
                     Identity, Layer, Linear, MaxPool, Rect, Sigmoid, SoftMax, SumPool, Tanh)
from .rules import Rule
from .sgd import train
from .targets import target_classes  # noqa: F401  (lrpnb.network.target_classes)

__all__ = ["Layer", "Linear", "Convolution", "SumPool", "MaxPool", "AveragePool", "GlobalAveragePool",
           "Rect", "Tanh", "Sigmoid", "SoftMax", "Flatten", "Identity", "BatchNorm", "LRN", "Add", "Concat",
           "Node", "Network"]

#: the name of a network's input in its graph, where it has one input not named otherwise
INPUT = "input"


def printable(text):
    """``text`` with its non-printable characters escaped (as repr writes
    them): node names come from model files, and a terminal escape sequence
    in one would be obeyed by the terminal, not printed."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))

class Node:
    """A layer in a graph network, with its name and the names of its inputs.

    Parameters
    ----------
    name : str
        Unique in its network; not 'input', which names the network's input.
    layer : Layer
    inputs : str or sequence of str
        Names of earlier nodes or of the network's inputs ('input' where
        it has one not named otherwise). Add and Concat take two or more,
        every other layer one.
    """

    def __init__(self, name, layer, inputs):
        if not isinstance(name, str) or not name or name == INPUT:
            raise ValueError(f"a node's name must be a non-empty string other than {INPUT!r}, got {name!r}")
        if not isinstance(layer, Layer):
            raise TypeError(f"node {name!r}: {type(layer).__name__} is not an lrpnb layer")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        if not inputs or not all(isinstance(i, str) for i in inputs):
            raise ValueError(f"node {name!r}: inputs must be names of earlier nodes or {INPUT!r}, got {inputs!r}")
        if layer.arity == 1 and len(inputs) != 1:
            raise ValueError(f"node {name!r}: {layer.describe()} takes one input, got {len(inputs)}")
        if layer.arity is None and isinstance(layer, Add) and len(inputs) < 2:
            raise ValueError(f"node {name!r}: Add takes two or more inputs, got {len(inputs)}")
        self.name, self.layer, self.inputs = name, layer, inputs

    def __repr__(self):
        return (f"<Node {printable(self.name)}: {printable(self.layer.describe())} <- "
                f"{printable(', '.join(self.inputs))}>")


class Network:
    """Layers in a chain, or nodes of a graph: forward passes and LRP explanations.

    Parameters
    ----------
    layers : sequence of Layer, or of Node
        Layers are applied in order (the toolbox's Sequential). Nodes form
        a graph in topological order: each names its inputs (earlier nodes
        or the network's inputs), and the last node's output is the
        network's.
    device : {'cpu', 'cuda', 'auto'}
        Where the kernels run; 'auto' takes the GPU when one is usable.
    inputs : str or sequence of str, optional
        The names of the network's inputs (default: one, 'input'). A chain
        of layers reads one. With several, the passes take a dict name ->
        array.
    explained : str or sequence of str, optional
        The inputs relevance is computed for (default: all). Nodes that
        depend on none of them get no relevance pass, and a join's share
        to such a value is dropped (a transformer's attention-mask path).

    Relevance that reaches a tensor from several consumers is summed, in
    node order. Sequential networks name their layers '0', '1', ...
    """

    def __init__(self, layers, device="cpu", inputs=None, explained=None):
        self.inputs = (INPUT,) if inputs is None else passes.input_names(inputs, "inputs")
        self._explained = self.inputs if explained is None else passes.input_names(explained, "explained", self.inputs)
        items = list(layers)
        if any(isinstance(item, Node) for item in items):
            if not all(isinstance(item, Node) for item in items):
                raise TypeError("give a network either layers or nodes, not both")
            nodes = items
        else:
            if len(self.inputs) > 1:
                raise ValueError(f"a chain of layers reads one input, not {len(self.inputs)}: build the network "
                                 f"from Nodes that name the inputs they read")
            for k, layer in enumerate(items):
                if not isinstance(layer, Layer):
                    raise TypeError(f"layer {k} is a {type(layer).__name__}, not an lrpnb layer")
                if layer.arity != 1:
                    raise ValueError(f"layer {k} ({layer.describe()}) joins several inputs: build the "
                                     f"network from Nodes that name them")
            nodes = [Node(str(k), layer, self.inputs[0] if k == 0 else str(k - 1)) for k, layer in enumerate(items)]
        self._set_nodes(nodes)
        #: the values of the last forward() call and how it was asked, read by lrp()
        self._activations, self._asked = None, None
        self._backend = backend(device)
        #: the shape of each input sample, (H, W, C), (D,) or (T,), where the
        #: model file fixes it (ONNX); None where the layers imply it
        self._input_shapes = dict.fromkeys(self.inputs)

    def __setstate__(self, state):
        if "inputs" not in state:  # pickled when networks had one input, named 'input'
            state = dict(state, inputs=(INPUT,), _explained=(INPUT,), _asked=None,
                         _input_shapes={INPUT: state.pop("input_shape", None)})
        self.__dict__.update(state)
        self._set_nodes(self.nodes)

    def _set_nodes(self, nodes):
        """Check the graph and index every node's inputs: values 0..I-1 are
        the network's I inputs, value I + k node k's output; and mark the
        values that depend on an explained input."""
        self._sources, self._index, self._relevant = passes.index_graph(self.inputs, self._explained, nodes)
        self.nodes = list(nodes)
        self.layers = [node.layer for node in nodes]

    @property
    def explained(self):
        """The names of the inputs relevance is computed for (settable)."""
        return self._explained

    @explained.setter
    def explained(self, names):
        self._explained = self.inputs if names is None else passes.input_names(names, "explained", self.inputs)
        self._set_nodes(self.nodes)

    @property
    def relevant_values(self):
        """For each value (inputs, then nodes' outputs), whether it depends
        on an explained input: only those receive relevance."""
        return self._relevant

    @property
    def input_shapes(self):
        """{input name: the shape of one sample, or None where the layers imply it}."""
        return dict(self._input_shapes)

    @input_shapes.setter
    def input_shapes(self, shapes):
        shapes = dict(shapes)
        passes.input_names(list(shapes) or self.inputs, "input_shapes", self.inputs)
        self._input_shapes = {name: None if shapes.get(name) is None else tuple(int(s) for s in shapes[name])
                              for name in self.inputs}

    @property
    def input_shape(self):
        """The shape of one input sample of a one-input network where the
        model file fixes it, else None (see :attr:`input_shapes`)."""
        return self._input_shapes[self.inputs[0]] if len(self.inputs) == 1 else None

    @input_shape.setter
    def input_shape(self, shape):
        if len(self.inputs) > 1:
            raise ValueError(f"the network has {len(self.inputs)} inputs: set input_shapes, a dict name -> shape")
        self.input_shapes = {self.inputs[0]: shape}

    @property
    def dtype(self):
        """The weights' dtype: float32 where most parameter values are
        float32, else float64 (the dtype integer inputs are cast to)."""
        return weights_dtype(self.layers)

    @property
    def is_sequential(self):
        """Whether every layer reads the previous one's output (the toolbox's networks)."""
        return len(self.inputs) == 1 and all(source == [k] for k, source in enumerate(self._sources))

    def node(self, key):
        """The Node named ``key`` (or at index ``key``)."""
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            if not -len(self.nodes) <= key < len(self.nodes):
                raise IndexError(f"node index {key} is outside the network (0..{len(self.nodes) - 1})")
            return self.nodes[key]
        if key not in self._index or self._index[key] < len(self.inputs):
            known = ", ".join(repr(node.name) for node in self.nodes[:20])
            raise KeyError(f"no node named {key!r}; nodes: {known}{', ...' if len(self.nodes) > 20 else ''}")
        return self.nodes[self._index[key] - len(self.inputs)]

    @property
    def device(self):
        """'cpu' or 'cuda': where the kernels run."""
        return self._backend.name

    @property
    def backend(self):
        """The compute backend of this network's device (kernel modules, and
        moving arrays to the device and back)."""
        return self._backend

    def to(self, device):
        """Run on ``device`` ('cpu', 'cuda' or 'auto') from now on (returns self).

        Weights are copied to the GPU once, on first use, and kept there.
        """
        self._backend = backend(device)
        self._activations, self._asked = None, None
        return self

    def __repr__(self):
        if self.is_sequential:
            body = "".join(f"\n  {k}: {layer.describe()}" for k, layer in enumerate(self.layers))
        else:
            body = "".join(f"\n  {k}: {printable(node.name)} = {printable(node.layer.describe())} <- "
                           f"{printable(', '.join(node.inputs))}" for k, node in enumerate(self.nodes))
        inputs = "" if self.inputs == (INPUT,) else f", inputs {printable(', '.join(self.inputs))}"
        return f"Network({len(self.layers)} layers, {self.device}{inputs}){body}"

    def __len__(self):
        return len(self.layers)

    def __getstate__(self):
        return dict(self.__dict__, _activations=None, _asked=None)

    # ------------------------------------------------------------ graph
    @property
    def sources(self):
        """For each node, the value indices of its inputs: 0..I-1 the
        network's I inputs, I + k node k's output."""
        return self._sources

    def value_index(self, name):
        """The value index of ``name``: an input's position among the
        inputs, I + k for node k's output."""
        return self._index[name]

    def node_inputs(self, values, k):
        """Node k's input among ``values``: one array, or a list for the
        layers that join several."""
        if self.layers[k].arity == 1:
            return values[self._sources[k][0]]
        return [values[i] for i in self._sources[k]]

    def scoring_count(self):
        """How many nodes give the class scores: all but a final SoftMax."""
        return len(self.layers) - 1 if self.layers and isinstance(self.layers[-1], SoftMax) else len(self.layers)

    # ------------------------------------------------------------ presets
    def set_lrp_parameters(self, rule=None, param=None, nodes=None):
        """Preset the same LRP rule on every layer, or on the ``nodes`` given
        by name or index. Every layer's is one rule for the whole network:
        the joins (Add, average pools) take zennit's Norm rule under it, as
        under ``explain(rule=...)``; a node named keeps the rule given."""
        Rule(rule, param)
        layers = self.layers if nodes is None else [self.node(key).layer for key in nodes]
        for layer in layers:
            layer.set_lrp_parameters(rule, param)
            layer.lrp_explicit = nodes is not None

    def drop_softmax_output_layer(self):
        """Remove a final SoftMax layer, if there is one (returns self)."""
        if self.layers and isinstance(self.layers[-1], SoftMax):
            self._set_nodes(self.nodes[:-1])
        return self

    # ------------------------------------------------------------ shapes
    def output_shapes(self, shape, layers=None):
        """Shapes after each layer (node) for an input of ``shape``; with
        ``layers``, a leading part of ``self.layers``, after those only.
        With several inputs, ``shape`` is a dict name -> shape, or a list
        of shapes in the order of ``inputs``.

        Raises ValueError naming the first layer the input does not fit.
        """
        count = len(self.layers) if layers is None else len(layers)
        if isinstance(shape, dict):
            shape = [shape[name] for name in self.inputs]
        shapes = [tuple(int(s) for s in one) for one in shape] \
            if shape and not isinstance(shape[0], numbers.Integral) else [tuple(int(s) for s in shape)]
        if len(shapes) != len(self.inputs):
            raise ValueError(f"{len(shapes)} input shapes for a network of {len(self.inputs)} inputs "
                             f"({', '.join(map(repr, self.inputs))})")
        first = len(shapes)
        for k in range(count):
            layer = self.layers[k]
            inputs = [shapes[i] for i in self._sources[k]]
            try:
                out = layer.output_shape(inputs[0] if layer.arity == 1 else inputs)
                shapes.append(tuple(int(s) for s in out))
            except ValueError as error:
                where = f"layer {k}" if self.is_sequential else f"node {k} ({self.nodes[k].name!r})"
                raise ValueError(f"input does not fit {where} ({layer.describe()}): {error}") from None
        return shapes[first:]

    # ------------------------------------------------------------ passes
    def to_host(self, array):
        """An array of this network's device as a numpy array."""
        return self._backend.to_host(array)

    def forward(self, X, dtype=None, position=None):
        """Output of the network for a batch ``X``, in X's float dtype.

        ``X`` is an array, or a dict name -> array for a network of several
        inputs; integer arrays (token ids) are cast to ``dtype``
        (np.float32 or np.float64; default: that of the float inputs given,
        else the weights', :attr:`dtype`). With ``position``, a language
        model's output (N, T, V) is answered at that token only, (N, V).
        Accepts numpy arrays, and GPU arrays on a network on the GPU;
        answers with the same kind. The activations are kept for a
        following :meth:`lrp` call.
        """
        values, kinds, named = network_inputs(self, X, dtype)
        self._activations = passes.trace(self, values, len(self.layers))
        self._asked = kinds, named
        return passes.answer_output(self._backend, self._activations[-1], position, kinds[0])

    def scores(self, X, dtype=None, position=None):
        """Class scores of a batch ``X``: the output before a final SoftMax
        (``X``, ``dtype`` and ``position`` as for :meth:`forward`).

        Unlike :meth:`forward`, this keeps no activations (memory holds two
        layers' outputs at a time) and no state, so several threads may call
        it at once. Answers with X's kind of array, in X's float dtype.
        """
        values, kinds, _ = network_inputs(self, X, dtype)
        return passes.answer_output(self._backend, passes.scores(self, values), position, kinds[0])

    def lrp(self, R, rule=None, param=None):
        """Input relevance for output relevance ``R`` of the last forward().

        As the toolbox's ``Sequential.lrp``: an explicit ``rule`` (with its
        ``param``) applies to every layer; with neither given, each layer uses
        its preset (default 'simple'). Answered as forward() was asked: a
        dict {explained input: relevance} for a dict of inputs.
        """
        if self._activations is None:
            raise RuntimeError("lrp() needs the activations of a forward() call; call forward(X) first")
        return passes.lrp(self, self._activations, R, rule, param, *self._asked)

    def explain(self, X, target=None, rule=None, param=None, composite=None, return_scores=False,
                return_layer_sums=False, layers=None, dtype=None, position=None):
        """Relevance of every input element for the score of a target class.

        Parameters
        ----------
        X : array (N, ...), or dict name -> array
            Input batch; float32 stays float32, other float dtypes become
            float64, integer arrays (token ids) ``dtype``. A network of
            several inputs takes a dict, and answers with a dict {explained
            input: relevance}. On a network on the GPU, a numpy array or a
            GPU array (answered with the same kind).
        target : None, int, int array of length N, 'all', ('topk', k) or Target
            Class to explain: None for each sample's predicted class. 'all'
            explains every class and ('topk', k) each sample's k best
            classes, from one forward pass (see :class:`lrpnb.targets.Target`).
            For a language model's logits (N, T, V), a vocabulary index.
        rule, param : str, float
            LRP rule or gradient method for every layer; neither given uses
            the layer presets. Under one LRP rule, the joins (Add,
            AveragePool, GlobalAveragePool) take zennit's Norm rule
            (``rules.NORM``: epsilon 1e-6), as do those whose preset was
            not set on them (docs/rules.md).
        composite : lrpnb composite, optional
            A rule per layer instead of ``rule``.
        return_scores : bool
            Also return the class scores (N, C) of the forward pass (before
            a final SoftMax), as a numpy array.
        return_layer_sums : bool
            Also return the relevance summed over each sample at the input
            of every layer: a float64 numpy array (N, L + 1), or (N, T, L + 1)
            for several targets, L the number of layers explained (a final
            SoftMax is not). Column k is the sum at layer k's input (column 0
            the sum of the returned relevance), column L the explained score.
            LRP's conservation (Bach et al., PLOS ONE 10(7), 2015) says the
            columns are equal, up to what biases and stabilizers absorb.
            In a graph, column k + 1 is the sum at node k's output.
        layers : sequence of str or int, optional
            Nodes (by name or index) whose output's relevance is also
            returned, as a dict {name: array} shaped like each node's output
            (with the target axis for several targets).
        dtype : np.float32 or np.float64, optional
            The arithmetic for integer inputs (default: that of the float
            inputs given, else the weights' :attr:`dtype`).
        position : int, optional
            For outputs (N, T, V) (language models): the token whose logits
            are the class scores (default -1, the last); an error for
            outputs (N, C).

        Returns
        -------
        array shaped like X, or (N, T) + X.shape[1:] for T targets per
        sample. With any of ``return_scores``, ``return_layer_sums`` and
        ``layers``, an :class:`lrpnb.explain.Explanation`: a tuple of the
        relevance and, in this order, the parts asked for (scores, layer
        sums, the dict of ``layers``), also named as its attributes. LRP
        starts from the score of the target class (before a final SoftMax),
        all other outputs zero; the gradient methods start from 1 there. No
        state is kept on the network, so several threads may call this at
        once.
        """
        return passes.explain(self, X, target, rule, param, composite, return_scores, return_layer_sums, layers,
                              dtype, position)

    def set_composite(self, composite):
        """Preset every layer's rule from a composite (see lrpnb.composites)."""
        for layer, (name, value) in zip(self.layers, composite.rules(self.layers)):
            layer.set_lrp_parameters(name, value)

    # ------------------------------------------------------------ training
    def parameter_gradients(self, X, loss):
        """Gradients of a loss with respect to every weight and bias.

        Parameters
        ----------
        X : array (N, ...)
            Input batch.
        loss : callable
            ``loss(scores) -> (value, dL/dscores)`` on the host, where scores
            are the outputs before a final SoftMax layer (if there is one).

        Returns
        -------
        value, [(layer, dW, dB)] for every Linear and Convolution layer in
        order, dW and dB as numpy arrays in X's float dtype.
        """
        if not self.is_sequential:
            raise ValueError("training supports sequential networks only")
        return passes.parameter_gradients(self, X, loss)

    def train(self, X, Y, Xval=None, Yval=None, **options):
        """Mini-batch SGD on the softmax cross-entropy, as the toolbox's
        ``Sequential.train``; see :func:`lrpnb.training.train` for the options.
        Returns the training history."""
        return train(self, X, Y, Xval, Yval, **options)

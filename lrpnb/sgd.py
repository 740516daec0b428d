r"""The optimizer: mini-batch SGD on the softmax cross-entropy.

This follows the LRP Toolbox's ``Sequential.train`` (Lapuschkin et al.,
JMLR 17(114), 2016): random mini-batches, an evaluation every ``status``
iterations that keeps the best parameters seen, the toolbox's learning-rate
decay and convergence test. Differences, chosen for a network that ends in
class scores rather than a SoftMax layer:

- the loss is the mean softmax cross-entropy of the scores s (the outputs
  before a final SoftMax layer, if there is one),
  :math:`L = -\frac{1}{N}\sum_n \log \mathrm{softmax}(s_n)_{y_n}`, whose
  gradient is :math:`(\mathrm{softmax}(s) - y) / N` (the toolbox passes
  ``Ypred - Y`` back from its SoftMax layer: the same direction, summed
  rather than averaged over the batch);
- SGD may use momentum (default 0.9; 0 is the toolbox's plain SGD):
  :math:`v \leftarrow \mu v - \eta\, \partial L/\partial w`,
  :math:`w \leftarrow w + v`.

The gradients come from the compiled kernels: ``Network.parameter_gradients``
runs the forward pass, then every layer's backward kernel (the same ones the
gradient methods use) and the weight-gradient kernels ``conv_weight_gradient``
and ``dense_weight_gradient``.

This module does not import :mod:`lrpnb.network` (``Network.train`` calls
:func:`train`); :mod:`lrpnb.training` is the public module that re-exports
it, beside the LeNet-5 builder.
"""
import time

import numpy as np

from .data_io import class_labels
from .layers.base import Weighted

__all__ = ["train", "softmax_cross_entropy", "accuracy"]


def softmax_cross_entropy(scores, labels):
    r"""Mean cross-entropy of ``softmax(scores)`` against integer ``labels``,
    and its gradient :math:`(\mathrm{softmax}(s) - \mathrm{onehot}(y)) / N`."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    value = float(np.mean(np.log(total[:, 0]) - shifted[rows, labels]))
    gradient = exp / total
    gradient[rows, labels] -= 1
    return value, gradient / len(labels)


def accuracy(net, X, labels, batch_size=1024):
    """Share of the samples whose largest output is their label."""
    hits = 0
    for start in range(0, len(X), batch_size):
        scores = net.forward(X[start:start + batch_size])
        hits += int(np.sum(np.argmax(scores, axis=1) == labels[start:start + batch_size]))
    return hits / len(X)


def train(net, X, Y, Xval=None, Yval=None, batchsize=25, iters=10000, lrate=0.005,
          lrate_decay=None, momentum=0.9, weight_decay=0.0, status=250, convergence=-1, transform=None, seed=None,
          verbose=True):
    """Train ``net`` in place with mini-batch SGD on the softmax cross-entropy.

    Parameters
    ----------
    X, Y : arrays
        Training inputs (N, ...) and labels: class indices (N,) or one-hot
        rows (N, C) as in the toolbox.
    Xval, Yval : arrays, optional
        Held-out data, evaluated every ``status`` iterations; without them
        the evaluation uses (up to 2,000 of) the training samples.
    batchsize, iters, lrate : int, int, float
        Samples per step (drawn without replacement within a step), steps,
        learning rate.
    lrate_decay : None, 'sublinear' or 'linear'
        The toolbox's decay: on each improvement the learning rate becomes
        ``lrate * (1 - acc**2)`` ('sublinear') or ``lrate * (1 - acc)``.
    momentum : float
        0 <= momentum < 1; 0 is plain SGD.
    weight_decay : float
        L2 penalty ``weight_decay / 2 * sum(W**2)`` on the weights (not the
        biases), added to the loss; 0 (the toolbox's) has none.
    status : int
        Evaluate (and print, with ``verbose``) every ``status`` steps; 0
        evaluates only at the end.
    convergence : int
        Stop after this many evaluations in a row without improvement
        (<= 0: never).
    transform : callable, optional
        ``transform(batch) -> batch`` applied to every training batch
        (noise, augmentation).
    seed : int, optional
        Seeds the batch draws: the same seed and data give the same model.

    Returns
    -------
    list of dicts (iteration, loss, accuracy, seconds), one per evaluation.
    The network keeps the best parameters evaluated.
    """
    X, labels, Xval, val_labels = _training_data(net, X, Y, Xval, Yval)
    _check_options(len(X), batchsize, iters, lrate, lrate_decay, momentum, weight_decay)
    rng = np.random.default_rng(seed)
    weighted = [layer for layer in net.layers if isinstance(layer, Weighted)]
    velocity = {id(layer): (np.zeros_like(layer.W), np.zeros_like(layer.B)) for layer in weighted}
    progress = _Progress(weighted, lrate_decay, convergence, verbose)
    for step in range(1, iters + 1):
        batch, loss_of = _batch(X, labels, rng, batchsize, transform, step)
        loss, gradients = net.parameter_gradients(batch, loss_of)
        progress.losses.append(loss)
        _update(gradients, velocity, lrate * progress.factor, momentum, weight_decay)
        if (status and step % status == 0) or step == iters:
            if progress.evaluate(step, accuracy(net, Xval, val_labels)):
                break
    progress.keep_best()
    return progress.history


def _training_data(net, X, Y, Xval, Yval):
    """Check the training and held-out data against ``net``'s class scores.

    Returns
    -------
    X, labels, Xval, val_labels
        The inputs as arrays and the labels as class indices; without
        ``Xval`` the held-out data are (up to 2,000 of) the training samples.
    """
    X = np.asarray(X)
    if X.ndim < 2 or len(X) == 0:
        raise ValueError(f"X must be a batch (N, ...) with N >= 1, got shape {X.shape}")
    shapes = net.output_shapes((1,) + X.shape[1:])
    if len(shapes[-1]) != 2:
        raise ValueError(f"train() needs a network that outputs class scores (N, C); this one "
                         f"outputs shape {shapes[-1]} (add a Flatten layer?)")
    classes = shapes[-1][-1]
    labels = class_labels(Y, "Y", len(X), classes)
    if (Xval is None) != (Yval is None):
        raise ValueError("give both Xval and Yval, or neither")
    if Xval is not None:
        Xval = np.asarray(Xval)
        val_labels = class_labels(Yval, "Yval", len(Xval), classes)
    else:
        pick = np.random.default_rng(0).permutation(len(X))[:2000]
        Xval, val_labels = X[pick], labels[pick]
    return X, labels, Xval, val_labels


def _check_options(count, batchsize, iters, lrate, lrate_decay, momentum, weight_decay):
    """Refuse the options of :func:`train` that are out of range, for
    ``count`` training samples."""
    for name, value, low in (("batchsize", batchsize, 1), ("iters", iters, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if batchsize > count:
        raise ValueError(f"batchsize {batchsize} exceeds the {count} training samples")
    if not lrate > 0:
        raise ValueError(f"lrate must be > 0, got {lrate!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
    if lrate_decay not in (None, "none", "sublinear", "linear"):
        raise ValueError(f"lrate_decay must be None, 'sublinear' or 'linear', got {lrate_decay!r}")


def _batch(X, labels, rng, batchsize, transform, step):
    """Draw the mini-batch of iteration ``step``.

    Returns
    -------
    batch, loss_of
        The (transformed) inputs, and the function of their scores that
        :meth:`Network.parameter_gradients` calls: the loss and its gradient,
        refusing scores that are no longer finite.
    """
    chosen = rng.choice(len(X), size=batchsize, replace=False)
    batch = X[chosen] if transform is None else transform(X[chosen])

    def loss_of(scores):
        if not np.isfinite(scores).all():
            raise FloatingPointError(f"the scores became infinite or NaN at iteration {step}; "
                                     f"lower lrate")
        return softmax_cross_entropy(scores, labels[chosen])

    return batch, loss_of


def _update(gradients, velocity, rate, momentum, weight_decay):
    """One SGD step with momentum: every layer's velocity, then its parameters."""
    for layer, dW, dB in gradients:
        vW, vB = velocity[id(layer)]
        vW *= momentum
        vW -= rate * (dW + weight_decay * layer.W if weight_decay else dW)
        vB *= momentum
        vB -= rate * dB
        layer.W = layer.W + vW
        layer.B = layer.B + vB


class _Progress:
    """The evaluations of one training run: the history, the best parameters
    seen, the learning-rate factor of the decay and the convergence count."""

    def __init__(self, weighted, lrate_decay, convergence, verbose):
        self.weighted, self.lrate_decay = weighted, lrate_decay
        self.convergence, self.verbose = convergence, verbose
        self.best_accuracy, self.best = -1.0, None
        self.factor, self.patience, self.history, self.losses = 1.0, convergence, [], []
        self.started = time.perf_counter()

    def evaluate(self, step, acc):
        """Record the held-out accuracy ``acc`` after iteration ``step``, keep
        the parameters when it improves; True when training has converged."""
        self.history.append(dict(iteration=step, loss=float(np.mean(self.losses)), accuracy=acc,
                                 seconds=time.perf_counter() - self.started))
        self.losses = []
        if self.verbose:
            print(f"iteration {step:6d}: loss {self.history[-1]['loss']:.4f}, "
                  f"held-out accuracy {100 * acc:.2f}%", flush=True)
        if acc > self.best_accuracy:
            self.best_accuracy, self.patience = acc, self.convergence
            self.best = [(layer, layer.W.copy(), layer.B.copy()) for layer in self.weighted]
            if self.lrate_decay == "sublinear":
                self.factor = 1 - acc * acc
            elif self.lrate_decay == "linear":
                self.factor = 1 - acc
            return False
        self.patience -= 1
        if self.convergence > 0 and self.patience <= 0:
            if self.verbose:
                print(f"no improvement in {self.convergence} evaluations: converged", flush=True)
            return True
        return False

    def keep_best(self):
        """Put the best parameters evaluated back into their layers."""
        for layer, W, B in self.best or []:
            layer.W, layer.B = W, B
        if self.verbose:
            print(f"kept the best parameters: held-out accuracy {100 * self.best_accuracy:.2f}%", flush=True)

r"""Training a Network: mini-batch SGD on the softmax cross-entropy.

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
"""
import time

import numpy as np

from .data_io import class_labels

__all__ = ["train", "softmax_cross_entropy", "accuracy", "lenet5"]


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
    from .network import _Weighted

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
    for name, value, low in (("batchsize", batchsize, 1), ("iters", iters, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if batchsize > len(X):
        raise ValueError(f"batchsize {batchsize} exceeds the {len(X)} training samples")
    if not lrate > 0:
        raise ValueError(f"lrate must be > 0, got {lrate!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
    if lrate_decay not in (None, "none", "sublinear", "linear"):
        raise ValueError(f"lrate_decay must be None, 'sublinear' or 'linear', got {lrate_decay!r}")

    rng = np.random.default_rng(seed)
    weighted = [layer for layer in net.layers if isinstance(layer, _Weighted)]
    velocity = {id(layer): (np.zeros_like(layer.W), np.zeros_like(layer.B)) for layer in weighted}
    best_accuracy, best = -1.0, None
    factor, patience, history, losses = 1.0, convergence, [], []
    started = time.perf_counter()
    for step in range(1, iters + 1):
        chosen = rng.choice(len(X), size=batchsize, replace=False)
        batch = X[chosen] if transform is None else transform(X[chosen])
        def loss_of(scores, step=step, chosen=chosen):
            if not np.isfinite(scores).all():
                raise FloatingPointError(f"the scores became infinite or NaN at iteration {step}; "
                                         f"lower lrate")
            return softmax_cross_entropy(scores, labels[chosen])

        loss, gradients = net.parameter_gradients(batch, loss_of)
        losses.append(loss)
        rate = lrate * factor
        for layer, dW, dB in gradients:
            vW, vB = velocity[id(layer)]
            vW *= momentum
            vW -= rate * (dW + weight_decay * layer.W if weight_decay else dW)
            vB *= momentum
            vB -= rate * dB
            layer.W = layer.W + vW
            layer.B = layer.B + vB
        if (status and step % status == 0) or step == iters:
            acc = accuracy(net, Xval, val_labels)
            history.append(dict(iteration=step, loss=float(np.mean(losses)), accuracy=acc,
                                seconds=time.perf_counter() - started))
            losses = []
            if verbose:
                print(f"iteration {step:6d}: loss {history[-1]['loss']:.4f}, "
                      f"held-out accuracy {100 * acc:.2f}%", flush=True)
            if acc > best_accuracy:
                best_accuracy, patience = acc, convergence
                best = [(layer, layer.W.copy(), layer.B.copy()) for layer in weighted]
                if lrate_decay == "sublinear":
                    factor = 1 - acc * acc
                elif lrate_decay == "linear":
                    factor = 1 - acc
            else:
                patience -= 1
                if convergence > 0 and patience <= 0:
                    if verbose:
                        print(f"no improvement in {convergence} evaluations: converged", flush=True)
                    break
    for layer, W, B in best or []:
        layer.W, layer.B = W, B
    if verbose:
        print(f"kept the best parameters: held-out accuracy {100 * best_accuracy:.2f}%", flush=True)
    return history


def lenet5(seed=0, dtype=np.float32):
    """A freshly initialised LeNet-5 of the toolbox's shape, for 32x32x1 inputs.

    Convolution 5x5x1x10, Rect, SumPool 2x2, Convolution 5x5x10x25, Rect,
    SumPool 2x2, Convolution 4x4x25x100, Rect, SumPool 2x2, Convolution
    1x1x100x10, Flatten. Weights are He-normal (std sqrt(2 / fan-in)), halved
    after a SumPool (whose window sum / 2 doubles the typical activation),
    so the initial scores have about unit scale; biases 0.
    """
    from .network import Convolution, Flatten, Network, Rect, SumPool

    rng = np.random.default_rng(seed)
    layers = []
    shapes = ((5, 1, 10), (5, 10, 25), (4, 25, 100), (1, 100, 10))
    for k, (h, d, n) in enumerate(shapes):
        std = np.sqrt(2 / (h * h * d)) * (0.5 if k else 1.0)
        W = rng.normal(0, std, size=(h, h, d, n)).astype(dtype)
        layers.append(Convolution(W, np.zeros(n, dtype)))
        if k < len(shapes) - 1:
            layers += [Rect(), SumPool((2, 2), (2, 2))]
    return Network(layers + [Flatten()])

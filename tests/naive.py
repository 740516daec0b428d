"""Plain-numpy reference of every layer and LRP rule, written from the formulas.

This module is the yardstick the compiled kernels are tested against. It follows
the LRP Toolbox's definitions (Lapuschkin et al., JMLR 17(114), 2016) literally:
for every output neuron j it forms the contributions z_ij explicitly and divides
by their stabilized sum. It is slow and memory hungry on purpose: clarity over
speed, and no code shared with lrpnb's kernels.

Layouts: images (N, H, W, D), vectors (N, D), dense weights (m, n), convolution
weights (h, w, d, n).
"""
import numpy as np

RULES = ("simple", "epsilon", "alphabeta", "flat", "ww")


def sgn(z):
    """Sign with sgn(0) = +1, as in the toolbox."""
    return np.where(z >= 0, 1.0, -1.0)


def shares(Z, B, rule, param, stabilizer=1e-16):
    """Relevance shares of the inputs of each output neuron.

    ``Z`` holds the contributions z_ij with the input index on axis 1 (all
    other input axes flattened into it) and the output index on the last
    axis; ``B`` the bias of each output (or None). Returns the share of input i
    in output j, same shape as ``Z``.
    """
    if B is None:
        B = np.zeros(Z.shape[-1])
    if rule == "simple":
        Zs = Z.sum(axis=1, keepdims=True) + B
        return Z / (Zs + stabilizer * sgn(Zs))
    if rule == "epsilon":
        Zs = Z.sum(axis=1, keepdims=True) + B
        return Z / (Zs + param * sgn(Zs))
    if rule == "alphabeta":
        alpha = param
        beta = 1.0 - alpha
        Zp = np.where(Z > 0, Z, 0.0)
        Zn = np.where(Z < 0, Z, 0.0)
        out = np.zeros_like(Z)
        if alpha != 0:
            out += alpha * Zp / (Zp.sum(axis=1, keepdims=True) + np.maximum(B, 0) + 1e-16)
        if beta != 0:
            out += beta * Zn / (Zn.sum(axis=1, keepdims=True) + np.minimum(B, 0) - 1e-16)
        return out
    raise ValueError(rule)


def modern_shares(Xp, Wp, B, z, rule, param):
    """Shares of the zplus, gamma and zb rules, as zennit defines them.

    ``Xp`` holds the inputs of each output (N, I, 1), ``Wp`` the weights
    (1, I, n), ``B`` the biases (n,) and ``z`` the outputs' forward values
    (N, 1, n). Stabilizer 1e-6 * sgn (sgn(0) = +1).
    """
    pos, neg = np.maximum(Xp, 0), np.minimum(Xp, 0)
    wpos, wneg = np.maximum(Wp, 0), np.minimum(Wp, 0)
    stab = lambda v: v + 1e-6 * sgn(v)  # noqa: E731
    if rule == "zplus":
        Z = pos * wpos + neg * wneg
        return Z / (Z.sum(axis=1, keepdims=True) + np.maximum(B, 0) + 1e-6)
    if rule == "gamma":
        g = param
        Za = pos * (Wp + g * wpos) + neg * (Wp + g * wneg)
        Zb = pos * (Wp + g * wneg) + neg * (Wp + g * wpos)
        ratio_a = Za / stab(Za.sum(axis=1, keepdims=True) + B + g * np.maximum(B, 0))
        ratio_b = Zb / stab(Zb.sum(axis=1, keepdims=True) + B + g * np.minimum(B, 0))
        return np.where(z > 0, ratio_a, 0.0) + np.where(z < 0, ratio_b, 0.0)
    if rule == "zb":
        low, high = param  # each broadcast to Xp's shape
        Z = Xp * Wp - low * wpos - high * wneg
        return Z / stab(Z.sum(axis=1, keepdims=True))
    raise ValueError(rule)


MODERN = ("zplus", "gamma", "zb")


# ---------------------------------------------------------------- dense
def dense_forward(X, W, B):
    return X @ W + B


def dense_lrp(X, W, B, R, rule, param=None):
    """R_i = sum_j share_ij R_j for a dense layer, shares from ``rule``."""
    N, m = X.shape
    if rule in MODERN:
        z = (X @ W + B)[:, None, :]
        bounds = None if rule != "zb" else tuple(np.broadcast_to(b, (m,))[None, :, None] for b in param)
        S = modern_shares(X[:, :, None], W[None], B, z, rule, bounds if rule == "zb" else param)
        return (S * R[:, None, :]).sum(axis=2)
    if rule == "flat":
        S = np.ones((N, m, W.shape[1])) / m
    elif rule == "ww":
        S = np.broadcast_to(W ** 2 / (W ** 2).sum(axis=0), (N,) + W.shape)
    else:
        Z = X[:, :, None] * W[None, :, :]
        S = shares(Z, B[None, None, :], rule, param)
    return (S * R[:, None, :]).sum(axis=2)


# ---------------------------------------------------------------- convolution
def _windows(H, W, h, w, s0, s1):
    for i in range((H - h) // s0 + 1):
        for j in range((W - w) // s1 + 1):
            yield i, j, slice(i * s0, i * s0 + h), slice(j * s1, j * s1 + w)


def conv_forward(X, Wt, B, stride):
    N, H, Wd, D = X.shape
    h, w, d, n = Wt.shape
    s0, s1 = stride
    Y = np.zeros((N, (H - h) // s0 + 1, (Wd - w) // s1 + 1, n))
    for i, j, si, sj in _windows(H, Wd, h, w, s0, s1):
        Y[:, i, j, :] = np.tensordot(X[:, si, sj, :], Wt, axes=([1, 2, 3], [0, 1, 2])) + B
    return Y


def conv_lrp(X, Wt, B, R, stride, rule, param=None):
    N, H, Wd, D = X.shape
    h, w, d, n = Wt.shape
    s0, s1 = stride
    Rx = np.zeros(X.shape)
    for i, j, si, sj in _windows(H, Wd, h, w, s0, s1):
        if rule in MODERN:
            patch = X[:, si, sj, :].reshape(N, h * w * d, 1)
            z = (patch * Wt.reshape(1, h * w * d, n)).sum(axis=1, keepdims=True) + B
            value = param
            if rule == "zb":
                value = tuple(np.broadcast_to(np.broadcast_to(b, (d,)), (h, w, d)).reshape(1, -1, 1)
                              for b in param)
            S = modern_shares(patch, Wt.reshape(1, h * w * d, n), B, z, rule, value)
            Rx[:, si, sj, :] += (S * R[:, i, j, None, :]).sum(axis=2).reshape(N, h, w, d)
            continue
        if rule == "flat":
            S = np.ones((N, h * w * d, n)) / (h * w * d)
        elif rule == "ww":
            W2 = (Wt ** 2).reshape(h * w * d, n)
            S = np.broadcast_to(W2 / W2.sum(axis=0), (N, h * w * d, n))
        else:
            Z = X[:, si, sj, :].reshape(N, h * w * d, 1) * Wt.reshape(1, h * w * d, n)
            S = shares(Z, B[None, None, :], rule, param)
        contrib = (S * R[:, i, j, None, :]).sum(axis=2)
        Rx[:, si, sj, :] += contrib.reshape(N, h, w, d)
    return Rx


# ---------------------------------------------------------------- pooling
def sumpool_forward(X, pool, stride):
    N, H, Wd, D = X.shape
    hp, wp = pool
    Y = np.zeros((N, (H - hp) // stride[0] + 1, (Wd - wp) // stride[1] + 1, D))
    for i, j, si, sj in _windows(H, Wd, hp, wp, *stride):
        Y[:, i, j, :] = X[:, si, sj, :].sum(axis=(1, 2)) / np.sqrt(hp * wp)
    return Y


def sumpool_lrp(X, R, pool, stride, rule, param=None):
    """Shares proportional to the window's inputs (the toolbox's SumPool)."""
    N, H, Wd, D = X.shape
    hp, wp = pool
    Rx = np.zeros(X.shape)
    for i, j, si, sj in _windows(H, Wd, hp, wp, *stride):
        # contributions: the window's inputs, input axis 1, channel axis last
        Z = X[:, si, sj, :].reshape(N, hp * wp, D)
        if rule in ("flat", "ww"):
            S = np.ones_like(Z) / (hp * wp)
        elif rule == "simple":
            S = shares(Z, None, "simple", None, stabilizer=1e-12)
        else:
            S = shares(Z, None, rule, param)
        Rx[:, si, sj, :] += (S * R[:, i, j, None, :]).reshape(N, hp, wp, D)
    return Rx


def maxpool_forward(X, pool, stride):
    N, H, Wd, D = X.shape
    hp, wp = pool
    Y = np.zeros((N, (H - hp) // stride[0] + 1, (Wd - wp) // stride[1] + 1, D))
    for i, j, si, sj in _windows(H, Wd, hp, wp, *stride):
        Y[:, i, j, :] = X[:, si, sj, :].max(axis=(1, 2))
    return Y


def maxpool_lrp(X, R, pool, stride, rule, param=None):
    """All relevance to the window's maxima, split evenly; flat/ww: uniform."""
    N, H, Wd, D = X.shape
    hp, wp = pool
    Rx = np.zeros(X.shape)
    for i, j, si, sj in _windows(H, Wd, hp, wp, *stride):
        win = X[:, si, sj, :]
        if rule in ("flat", "ww"):
            S = np.ones_like(win) / (hp * wp)
        else:
            is_max = (win == win.max(axis=(1, 2), keepdims=True)).astype(float)
            S = is_max / is_max.sum(axis=(1, 2), keepdims=True)
        Rx[:, si, sj, :] += S * R[:, i:i + 1, j:j + 1, :]
    return Rx


# ---------------------------------------------------------------- networks
def network_forward(layers, X):
    """``layers``: list of (kind, params) tuples; returns all activations."""
    acts = [X]
    for kind, p in layers:
        x = acts[-1]
        if kind == "linear":
            acts.append(dense_forward(x, p["W"], p["B"]))
        elif kind == "conv":
            acts.append(conv_forward(x, p["W"], p["B"], p["stride"]))
        elif kind == "sumpool":
            acts.append(sumpool_forward(x, p["pool"], p["stride"]))
        elif kind == "maxpool":
            acts.append(maxpool_forward(x, p["pool"], p["stride"]))
        elif kind == "rect":
            acts.append(np.maximum(x, 0))
        elif kind == "tanh":
            acts.append(np.tanh(x))
        elif kind == "flatten":
            acts.append(x.reshape(x.shape[0], -1))
        elif kind == "softmax":
            e = np.exp(x - x.max(axis=1, keepdims=True))
            acts.append(e / e.sum(axis=1, keepdims=True))
        else:
            raise ValueError(kind)
    return acts


def network_lrp(layers, acts, R, rule, param=None):
    for (kind, p), x in zip(layers[::-1], acts[-2::-1]):
        if kind == "linear":
            R = dense_lrp(x, p["W"], p["B"], R, rule, param)
        elif kind == "conv":
            R = conv_lrp(x, p["W"], p["B"], R, p["stride"], rule, param)
        elif kind == "sumpool":
            R = sumpool_lrp(x, R, p["pool"], p["stride"], rule, param)
        elif kind == "maxpool":
            R = maxpool_lrp(x, R, p["pool"], p["stride"], rule, param)
        elif kind == "flatten":
            R = R.reshape(x.shape)
    return R


def network_gradient(layers, acts, G, mode="gradient"):
    """d(output . G)/d(input), written from the chain rule; ``mode``
    'deconvnet' or 'guided_backprop' changes what a ReLU passes back."""
    for (kind, p), x in zip(layers[::-1], acts[-2::-1]):
        if kind == "linear":
            G = G @ p["W"].T
        elif kind == "conv":
            h, w, d, n = p["W"].shape
            out = np.zeros(x.shape)
            for i, j, si, sj in _windows(x.shape[1], x.shape[2], h, w, *p["stride"]):
                out[:, si, sj, :] += np.tensordot(G[:, i, j, :], p["W"], axes=([1], [3]))
            G = out
        elif kind == "sumpool":
            hp, wp = p["pool"]
            out = np.zeros(x.shape)
            for i, j, si, sj in _windows(x.shape[1], x.shape[2], hp, wp, *p["stride"]):
                out[:, si, sj, :] += G[:, i:i + 1, j:j + 1, :] / np.sqrt(hp * wp)
            G = out
        elif kind == "maxpool":
            G = maxpool_lrp(x, G, p["pool"], p["stride"], "simple")
        elif kind == "rect":
            if mode == "deconvnet":
                G = np.maximum(G, 0)
            elif mode == "guided_backprop":
                G = G * (x > 0) * (G > 0)
            else:
                G = G * (x > 0)
        elif kind == "tanh":
            G = G * (1 - np.tanh(x) ** 2)
        elif kind == "flatten":
            G = G.reshape(x.shape)
    return G


def conv_weight_gradient(X, Wshape, G, stride):
    """dW[a,b,c,k] = sum_{n,i,j} X[n, i*s0+a, j*s1+b, c] G[n,i,j,k]; dB[k] = sum G[..., k]."""
    N, H, Wd, D = X.shape
    h, w, d, n = Wshape
    dW = np.zeros(Wshape)
    for i, j, si, sj in _windows(H, Wd, h, w, *stride):
        dW += np.einsum("nabc,nk->abck", X[:, si, sj, :], G[:, i, j, :])
    return dW, G.sum(axis=(0, 1, 2))


# ---------------------------------------------------------------- region perturbation
def region_order(R, region, order):
    """Samek et al. (IEEE TNNLS 2017), step 1: cut each (H, W, D) relevance
    map into a grid of region[0] x region[1] tiles (short at the far edges),
    sum each tile over its pixels and channels, and list the tiles most
    relevant first ('morf') or least relevant first ('lerf'); equal sums
    keep grid order (row by row). Returns, per sample, a list of tiles
    (row slice, column slice)."""
    rh, rw = region
    orders = []
    for r in R:
        tiles = [(slice(i, i + rh), slice(j, j + rw))
                 for i in range(0, r.shape[0], rh) for j in range(0, r.shape[1], rw)]
        sums = [float(np.sum(r[t].astype(np.float64))) for t in tiles]
        ranked = sorted(range(len(tiles)), key=lambda k: (-sums[k] if order == "morf" else sums[k], k))
        orders.append([tiles[k] for k in ranked])
    return orders


def region_perturbation(score, X, orders, V, steps):
    """Step 2: x^(0) = x, and x^(k) is x^(k-1) with the k-th tile of the
    order replaced by the same tile of V; ``score(x)`` gives f(x) of one
    sample. Returns (the scores (N, steps+1), the inputs (N, steps+1, ...))."""
    curves, inputs = [], []
    for x, tiles, v in zip(X, orders, V):
        current = x.copy()
        sequence = [current.copy()]
        for tile in tiles[:steps]:
            current[tile] = v[tile]
            sequence.append(current.copy())
        inputs.append(sequence)
        curves.append([score(s) for s in sequence])
    return np.array(curves), np.array(inputs)


def aopc(curves):
    """Step 3: AOPC = < 1/(L+1) sum_{k=0}^{L} f(x^(0)) - f(x^(k)) > over the samples."""
    L = curves.shape[1] - 1
    return np.mean([sum(c[0] - c[k] for k in range(L + 1)) / (L + 1) for c in curves])

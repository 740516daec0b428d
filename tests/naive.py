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


def maxpool_gradient(X, G, pool, stride):
    """Autograd's max pool: a window's G to its first maximum, rows then columns."""
    N, H, Wd, D = X.shape
    hp, wp = pool
    out = np.zeros(X.shape)
    for i, j, si, sj in _windows(H, Wd, hp, wp, *stride):
        win = X[:, si, sj, :].reshape(N, hp * wp, D)
        first = win.argmax(axis=1)  # numpy's argmax: the first of equal maxima
        for n in range(N):
            for c in range(D):
                a, b = divmod(first[n, c], wp)
                out[n, si.start + a, sj.start + b, c] += G[n, i, j, c]
    return out


# ---------------------------------------------------------------- layers of imported models
def padded(X, padding, value=0.0):
    """X with ``value`` rows/columns added: padding = (top, bottom, left, right)."""
    top, bottom, left, right = padding
    return np.pad(X, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def unpadded(R, padding):
    top, bottom, left, right = padding
    return R[:, top:R.shape[1] - bottom, left:R.shape[2] - right]


def conv_general_taps(X, Wt, stride, padding, dilation, groups):
    """For a convolution with zero padding, dilation and groups: the padded
    input, and for every output (i, j) and group g the tuple
    (i, j, g, input rows, input columns, input channels) of its taps, in
    (a, b, c) order, indexing the padded input."""
    Xp = padded(X, padding)
    h, w, dg, n = Wt.shape
    dr, dc = dilation
    span_h, span_w = (h - 1) * dr + 1, (w - 1) * dc + 1
    Ho = (Xp.shape[1] - span_h) // stride[0] + 1
    Wo = (Xp.shape[2] - span_w) // stride[1] + 1
    taps = []
    for i in range(Ho):
        for j in range(Wo):
            for g in range(groups):
                rows = i * stride[0] + dr * np.arange(h)
                cols = j * stride[1] + dc * np.arange(w)
                taps.append((i, j, g, rows, cols, g * dg + np.arange(dg)))
    return Xp, Ho, Wo, taps


def conv_general_forward(X, Wt, B, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """y_ijk = b_k + sum_{a,b,c} x_{i s0 - top + a dr, j s1 - left + b dc, g d' + c} w_abck
    (zeros outside the image; output k in group g = k // (n / groups))."""
    h, w, dg, n = Wt.shape
    ng = n // groups
    Xp, Ho, Wo, taps = conv_general_taps(X, Wt, stride, padding, dilation, groups)
    Y = np.zeros((X.shape[0], Ho, Wo, n))
    for i, j, g, rows, cols, chans in taps:
        patch = Xp[:, rows][:, :, cols][:, :, :, chans]
        ks = slice(g * ng, (g + 1) * ng)
        Y[:, i, j, ks] = np.tensordot(patch, Wt[..., ks], axes=([1, 2, 3], [0, 1, 2])) + B[ks]
    return Y


def conv_general_lrp(X, Wt, B, R, rule, param=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
                     groups=1):
    """Input relevance of the general convolution: the shares of every
    output's taps (conv_lrp's formulas; the zeros of the padding contribute
    nothing, and flat and ww share among the taps on the image only),
    gradient = the transposed convolution."""
    h, w, dg, n = Wt.shape
    ng = n // groups
    Xp, Ho, Wo, taps = conv_general_taps(X, Wt, stride, padding, dilation, groups)
    N = X.shape[0]
    Rp = np.zeros(Xp.shape)
    Y = conv_general_forward(X, Wt, B, stride, padding, dilation, groups)
    size = h * w * dg
    for i, j, g, rows, cols, chans in taps:
        ks = slice(g * ng, (g + 1) * ng)
        Wg = Wt[..., ks].reshape(1, size, ng)
        patch = Xp[:, rows][:, :, cols][:, :, :, chans].reshape(N, size, 1)
        if rule == "gradient":
            S = np.broadcast_to(Wg, (N, size, ng))
        elif rule in MODERN:
            value = param
            if rule == "zb":
                inside = padded(np.ones(X.shape[:3] + (1,)), padding)[:, rows][:, :, cols]
                value = tuple((np.broadcast_to(np.broadcast_to(b, (X.shape[3],))[chans], (N, h, w, dg))
                               * inside).reshape(N, size, 1) for b in param)
            S = modern_shares(patch, Wg, B[ks], Y[:, i, j, None, ks], rule, value)
        elif rule in ("flat", "ww"):
            # shares among the taps on the image (zennit's Flat and WSquare
            # on a padded convolution): 1 or w^2, over their sum on the image
            inside = np.broadcast_to(padded(np.ones(X.shape[:3] + (1,)), padding)[:, rows][:, :, cols],
                                     (N, h, w, dg)).reshape(N, size, 1)
            V = inside * (np.ones_like(Wg) if rule == "flat" else Wg ** 2)
            total = V.sum(axis=1, keepdims=True)  # 0 where every tap is on the padding
            S = np.divide(V, total, out=np.zeros_like(V), where=total > 0)
        else:
            S = shares(patch * Wg, B[None, None, ks], rule, param)
        contrib = (S * R[:, i, j, None, ks]).sum(axis=2).reshape(N, h, w, dg)
        for a, p in enumerate(rows):
            for b, q in enumerate(cols):
                Rp[:, p, q, chans] += contrib[:, a, b]
    return unpadded(Rp, padding)


def avgpool_windows(H, W, pool, stride, padding, Ho, Wo):
    """(i, j, rows inside, columns inside) of every average-pool window."""
    for i in range(Ho):
        for j in range(Wo):
            p0, q0 = i * stride[0] - padding[0], j * stride[1] - padding[2]
            yield i, j, slice(max(p0, 0), min(p0 + pool[0], H)), slice(max(q0, 0), min(q0 + pool[1], W))


def avgpool_forward(X, pool, stride, padding, include_pad):
    N, H, W, D = X.shape
    Ho = (H + padding[0] + padding[1] - pool[0]) // stride[0] + 1
    Wo = (W + padding[2] + padding[3] - pool[1]) // stride[1] + 1
    Y = np.zeros((N, Ho, Wo, D))
    for i, j, si, sj in avgpool_windows(H, W, pool, stride, padding, Ho, Wo):
        count = pool[0] * pool[1] if include_pad else (si.stop - si.start) * (sj.stop - sj.start)
        Y[:, i, j] = X[:, si, sj].sum(axis=(1, 2)) / count
    return Y


def avgpool_lrp(X, R, pool, stride, padding, include_pad, rule, param=None):
    """Average pool as a layer with weights 1/count: epsilon-type rules
    (simple 1e-16, epsilon param, other LRP rules 1e-6), alpha-beta/z+ on the
    inputs' signs, flat/ww equal shares of the inputs inside, gradient 1/count."""
    N, H, W, D = X.shape
    Y = avgpool_forward(X, pool, stride, padding, include_pad)
    Rx = np.zeros(X.shape)
    for i, j, si, sj in avgpool_windows(H, W, pool, stride, padding, Y.shape[1], Y.shape[2]):
        inside = (si.stop - si.start) * (sj.stop - sj.start)
        count = pool[0] * pool[1] if include_pad else inside
        x = X[:, si, sj]
        r = R[:, i:i + 1, j:j + 1]
        if rule == "gradient":
            Rx[:, si, sj] += r / count
        elif rule in ("flat", "ww"):
            Rx[:, si, sj] += r / inside
        elif rule in ("alphabeta", "zplus"):
            alpha, tiny = (param, 1e-16) if rule == "alphabeta" else (1.0, 1e-6)
            xp, xn = np.maximum(x, 0), np.minimum(x, 0)
            Rx[:, si, sj] += r * (alpha * xp / (xp.sum(axis=(1, 2), keepdims=True) + tiny)
                                  + (1 - alpha) * xn / (xn.sum(axis=(1, 2), keepdims=True) - tiny))
        else:
            eps = {"simple": 1e-16, "epsilon": param}.get(rule, 1e-6)
            z = x / count
            zs = z.sum(axis=(1, 2), keepdims=True)
            Rx[:, si, sj] += r * z / (zs + eps * sgn(zs))
    return Rx


def add_lrp(parts, R, rule, param=None):
    """R_m = x_m R / (sum x + eps sgn), eps as for the average pool; gradient: R each."""
    if rule == "gradient":
        return [R.copy() for _ in parts]
    y = sum(parts)
    eps = {"simple": 1e-16, "epsilon": param}.get(rule, 1e-6)
    return [x * R / (y + eps * sgn(y)) for x in parts]


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
            G = maxpool_gradient(x, G, p["pool"], p["stride"])
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


# ---------------------------------------------------------------- products and LayerNorm
def scale_forward(X, s):
    """y = x s, s one value or one per channel (last axis)."""
    return X * np.asarray(s, dtype=np.float64)


def scale_lrp(X, s, R, rule, param=None):
    """Scale as a dense layer with a diagonal weight (one input per output,
    no bias), each sample's values flattened: the dense rules above. flat:
    the one input of each output gets all of it."""
    N = X.shape[0]
    if rule == "flat":
        return R.copy()
    P = X[0].size
    C = X.shape[-1]
    weights = np.resize(np.asarray(s, dtype=np.float64), P) if np.size(s) > 1 else np.full(P, float(np.ravel(s)[0]))
    W = np.diag(weights)
    if rule == "zb":
        param = tuple(np.resize(np.broadcast_to(np.asarray(b, dtype=np.float64), (C,)), P) for b in param)
    out = dense_lrp(X.reshape(N, P), W, np.zeros(P), R.reshape(N, P), rule, param)
    return out.reshape(X.shape)


def _broadcast_axes(g, x):
    return tuple(k for k in range(x.ndim) if g.shape[k] == 1 and x.shape[k] != 1)


def mul_lrp(x, g, R, rule):
    """(relevance of x, of g) of y = x g: 'uniform' R/2 each (the gate's
    summed over the axes it was broadcast along); otherwise the gate held
    constant: R to x, nothing to g."""
    if rule == "uniform":
        return R / 2, (R / 2).sum(axis=_broadcast_axes(g, x), keepdims=True)
    return R.copy(), np.zeros(g.shape)


def mul_gradient(x, g, G):
    """The product rule: (G g, G x summed over g's broadcast axes)."""
    return G * g, (G * x).sum(axis=_broadcast_axes(g, x), keepdims=True)


def layernorm_forward(X, gamma, beta, eps):
    mean = X.mean(axis=-1, keepdims=True)
    var = ((X - mean) ** 2).mean(axis=-1, keepdims=True)
    return (X - mean) / np.sqrt(var + eps) * gamma + beta


def layernorm_lrp(X, gamma, beta, eps, R, stabilizer):
    """AttnLRP's rule: sigma held constant, the layer is y_j = sum_i z_ij +
    beta_j with z_ij = x_i gamma_j (delta_ij - 1/D) / sigma; the epsilon
    rule on those contributions (``shares``)."""
    D = X.shape[-1]
    rows, Rr = X.reshape(-1, D), R.reshape(-1, D)
    out = np.empty_like(rows)
    for p, x in enumerate(rows):
        sigma = np.sqrt(((x - x.mean()) ** 2).mean() + eps)
        A = (np.eye(D) - 1.0 / D) * gamma[None, :] / sigma  # A[i, j] = dy_j / dx_i
        Z = (x[:, None] * A)[None]
        out[p] = (shares(Z, beta[None, None, :], "epsilon", stabilizer)[0] * Rr[p][None, :]).sum(axis=1)
    return out.reshape(X.shape)


def layernorm_gradient(X, gamma, eps, G):
    """sum_j G_j dy_j/dx_i with the full Jacobian dy_j/dx_i = gamma_j / sigma
    (delta_ij - 1/D - xhat_i xhat_j / D)."""
    D = X.shape[-1]
    rows, Gr = X.reshape(-1, D), G.reshape(-1, D)
    out = np.empty_like(rows)
    for p, x in enumerate(rows):
        sigma = np.sqrt(((x - x.mean()) ** 2).mean() + eps)
        xhat = (x - x.mean()) / sigma
        J = (np.eye(D) - 1.0 / D - np.outer(xhat, xhat) / D) * gamma[None, :] / sigma
        out[p] = J @ Gr[p]
    return out.reshape(X.shape)


# ---------------------------------------------------------------- pools with padding and ceil mode
# Written from docs/rules.md ("Pools in ceil mode"): per axis, output i's
# window starts at i*stride - pad_begin and spans `kernel` places; its inputs
# are the places inside the image; what it counts with count_include_pad is
# the window clipped to the padded image (begin padding, image, end padding),
# never the ceil-mode overhang beyond the end padding.
def pooled_length(size, kernel, stride, begin, end, ceil_mode):
    """floor or ceil((size + begin + end - kernel) / stride) + 1; in ceil mode
    one less when the last window would start in the end padding."""
    span = size + begin + end - kernel
    count = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (count - 1) * stride >= size + begin:
        count -= 1
    return count


def pool_axis_windows(size, kernel, stride, begin, end, ceil_mode):
    """(first input place, one past the last, counted size) of each window on one axis."""
    windows = []
    for i in range(pooled_length(size, kernel, stride, begin, end, ceil_mode)):
        start = i * stride - begin
        windows.append((max(start, 0), min(start + kernel, size), min(start + kernel, size + end) - start))
    return windows


def pool2d_windows(H, W, pool, stride, padding, ceil_mode):
    """(i, j, rows, columns, counted size) of every window of a 2-D pool;
    padding = (top, bottom, left, right)."""
    rows = pool_axis_windows(H, pool[0], stride[0], padding[0], padding[1], ceil_mode)
    columns = pool_axis_windows(W, pool[1], stride[1], padding[2], padding[3], ceil_mode)
    for i, (p0, p1, ch) in enumerate(rows):
        for j, (q0, q1, cw) in enumerate(columns):
            yield i, j, slice(p0, p1), slice(q0, q1), ch * cw


def pool2d_shape(X, pool, stride, padding, ceil_mode):
    N, H, W, D = X.shape
    return (N, pooled_length(H, pool[0], stride[0], padding[0], padding[1], ceil_mode),
            pooled_length(W, pool[1], stride[1], padding[2], padding[3], ceil_mode), D)


def maxpool2d_forward(X, pool, stride, padding, ceil_mode):
    """The maximum of each window's inputs (padding and overhang never win)."""
    Y = np.zeros(pool2d_shape(X, pool, stride, padding, ceil_mode))
    for i, j, si, sj, _ in pool2d_windows(X.shape[1], X.shape[2], pool, stride, padding, ceil_mode):
        Y[:, i, j] = X[:, si, sj].max(axis=(1, 2))
    return Y


def maxpool2d_lrp(X, R, pool, stride, padding, ceil_mode, rule):
    """gradient: a window's R to its first maximum (rows, then columns);
    flat/ww: R / (hp wp) to each input of the window (the places outside the
    image keep their shares); every other rule: R split evenly among the maxima."""
    Rx = np.zeros(X.shape)
    for i, j, si, sj, _ in pool2d_windows(X.shape[1], X.shape[2], pool, stride, padding, ceil_mode):
        win = X[:, si, sj]
        r = R[:, i:i + 1, j:j + 1]
        if rule in ("flat", "ww"):
            Rx[:, si, sj] += r / (pool[0] * pool[1]) * np.ones_like(win)
        elif rule == "gradient":
            rows, columns = win.shape[1], win.shape[2]
            first = win.reshape(win.shape[0], rows * columns, -1).argmax(axis=1)
            for n in range(X.shape[0]):
                for c in range(X.shape[3]):
                    a, b = divmod(first[n, c], columns)
                    Rx[n, si.start + a, sj.start + b, c] += R[n, i, j, c]
        else:
            is_max = (win == win.max(axis=(1, 2), keepdims=True)).astype(float)
            Rx[:, si, sj] += r * is_max / is_max.sum(axis=(1, 2), keepdims=True)
    return Rx


def avgpool2d_forward(X, pool, stride, padding, include_pad, ceil_mode):
    """The sum of each window's inputs over its counted size (include_pad) or
    over the number of its inputs."""
    Y = np.zeros(pool2d_shape(X, pool, stride, padding, ceil_mode))
    for i, j, si, sj, counted in pool2d_windows(X.shape[1], X.shape[2], pool, stride, padding, ceil_mode):
        inside = (si.stop - si.start) * (sj.stop - sj.start)
        Y[:, i, j] = X[:, si, sj].sum(axis=(1, 2)) / (counted if include_pad else inside)
    return Y


def avgpool2d_lrp(X, R, pool, stride, padding, include_pad, ceil_mode, rule, param=None):
    """As avgpool_lrp, over pool2d_windows: weights 1/count for the epsilon
    rules (simple 1e-16, epsilon param, other LRP rules 1e-6) and the
    gradient, sign-split shares for alpha-beta/z+, equal shares of the inputs
    for flat/ww."""
    Rx = np.zeros(X.shape)
    for i, j, si, sj, counted in pool2d_windows(X.shape[1], X.shape[2], pool, stride, padding, ceil_mode):
        inside = (si.stop - si.start) * (sj.stop - sj.start)
        count = counted if include_pad else inside
        x, r = X[:, si, sj], R[:, i:i + 1, j:j + 1]
        if rule == "gradient":
            Rx[:, si, sj] += r / count
        elif rule in ("flat", "ww"):
            Rx[:, si, sj] += r / inside
        elif rule in ("alphabeta", "zplus"):
            alpha, tiny = (param, 1e-16) if rule == "alphabeta" else (1.0, 1e-6)
            xp, xn = np.maximum(x, 0), np.minimum(x, 0)
            Rx[:, si, sj] += r * (alpha * xp / (xp.sum(axis=(1, 2), keepdims=True) + tiny)
                                  + (1 - alpha) * xn / (xn.sum(axis=(1, 2), keepdims=True) - tiny))
        else:
            eps = {"simple": 1e-16, "epsilon": param}.get(rule, 1e-6)
            z = x / count
            zs = z.sum(axis=(1, 2), keepdims=True)
            Rx[:, si, sj] += r * z / (zs + eps * sgn(zs))
    return Rx


# ---------------------------------------------------------------- element-wise activations of the model zoo
def _erf(values):
    import math

    return np.vectorize(math.erf, otypes=[np.float64])(values)


def zoo_activation(name, X, **params):
    """f(x) in float64 from the formulas of docs/rules.md (ONNX's definitions)."""
    x = np.asarray(X, dtype=np.float64)
    if name == "Clip":
        return np.minimum(np.maximum(x, params["min"]), params["max"])
    if name == "HardSigmoid":
        return np.maximum(0.0, np.minimum(1.0, params["alpha"] * x + params["beta"]))
    if name == "HardSwish":
        return x * np.maximum(0.0, np.minimum(1.0, x / 6 + 0.5))
    if name == "SiLU":
        with np.errstate(over="ignore"):  # exp(-x) = inf for x << 0: the limit 0 is right
            return x / (1.0 + np.exp(-x))
    if name == "LeakyReLU":
        return np.where(x >= 0, x, params["alpha"] * x)
    if name == "GELU" and params.get("approximate"):
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))
    if name == "GELU":
        return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))
    raise ValueError(f"no reference for {name}")


def zoo_activation_derivative(name, X, **params):
    """f'(x) in float64, by the formulas, with torch.autograd's values at the
    kinks: clip 0 at its bounds (hardtanh), hard sigmoid 0 at its kinks, hard
    swish 0 at x = -3 and 1 at x = 3, leaky ReLU alpha at 0."""
    x = np.asarray(X, dtype=np.float64)
    if name == "Clip":
        return ((x > params["min"]) & (x < params["max"])).astype(np.float64)
    if name == "HardSigmoid":
        t = params["alpha"] * x + params["beta"]
        return np.where((t > 0) & (t < 1), params["alpha"], 0.0)
    if name == "HardSwish":
        return np.where(x <= -3, 0.0, np.where(x >= 3, 1.0, x / 3 + 0.5))
    if name == "SiLU":
        with np.errstate(over="ignore"):
            s = 1.0 / (1.0 + np.exp(-x))
        return s + x * s * (1.0 - s)
    if name == "LeakyReLU":
        return np.where(x > 0, 1.0, params["alpha"])
    if name == "GELU" and params.get("approximate"):
        c = np.sqrt(2.0 / np.pi)
        t = np.tanh(c * (x + 0.044715 * x ** 3))
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * x * x)
    if name == "GELU":
        return 0.5 * (1.0 + _erf(x / np.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
    raise ValueError(f"no reference for {name}")


# ---------------------------------------------------------------- transposed convolution
def conv_transpose_forward(X, W, B, stride=(1, 1), padding=(0, 0, 0, 0), output_padding=(0, 0), dilation=(1, 1),
                           groups=1):
    """ONNX ConvTranspose of NHWC images, W in ONNX's layout (C_in, C_out/groups, h, w):
    every input pixel x[n, i, j, c] scatters x W[c, k, a, b] onto output
    (i s0 - top + a d0, j s1 - left + b d1, g n' + k), g = c // (C_in/groups),
    dropped where that falls outside the output; plus B. Output rows
    (H - 1) s0 - top - bottom + (h - 1) d0 + output_padding + 1."""
    N, H, Wd, C = X.shape
    _, ng, h, w = W.shape
    top, bottom, left, right = padding
    Ho = (H - 1) * stride[0] - top - bottom + (h - 1) * dilation[0] + output_padding[0] + 1
    Wo = (Wd - 1) * stride[1] - left - right + (w - 1) * dilation[1] + output_padding[1] + 1
    Y = np.zeros((N, Ho, Wo, ng * groups)) + B
    cg = C // groups
    for i in range(H):
        for j in range(Wd):
            for c in range(C):
                g = c // cg
                for a in range(h):
                    for b in range(w):
                        p, q = i * stride[0] - top + a * dilation[0], j * stride[1] - left + b * dilation[1]
                        if 0 <= p < Ho and 0 <= q < Wo:
                            Y[:, p, q, g * ng:(g + 1) * ng] += X[:, i, j, c, None] * W[c, :, a, b]
    return Y


def linear_matrix(forward, shape):
    """The (m, n) matrix M of a linear map without bias, y = x M on rows
    flattened in C order: row i is the map of the i-th unit vector of
    ``shape`` (one sample)."""
    m = int(np.prod(shape))
    return np.stack([forward(np.eye(m)[i].reshape((1,) + tuple(shape))).reshape(-1) for i in range(m)])


def linear_map_lrp(X, M, B, R, rule, param=None, connected=None):
    """Input relevance of ``y = x M + B`` on flattened rows (X (N, m), R (N, n)):
    dense_lrp's formulas, except that flat and ww share among the inputs
    connected to each output only (``connected`` (m, n), 1 where an input
    reaches an output through a filter tap: the matrix with W replaced by 1):
    ``R_i = sum_j V_ij / sum_i' V_i'j R_j``, V = connected or M^2 (0 for an
    output no input reaches); 'gradient' is ``R M^T``."""
    if rule == "gradient":
        return R @ M.T
    if rule in ("flat", "ww"):
        V = connected if rule == "flat" else M ** 2
        total = V.sum(axis=0)
        S = np.divide(V, total, out=np.zeros_like(V), where=total > 0)
        return R @ S.T
    return dense_lrp(X, M, B, R, rule, param)


# ---------------------------------------------------------------- attention: MatMul and AttentionSoftmax
# Written from docs/rules.md ("Attention"): y_ts = sum_k a_tk b_ks per matrix
# of the batch axes; each contribution z_tks = a_tk b_ks gets its share of
# R_ts by the epsilon rule, z_tks / (y_ts + eps sgn y_ts), sgn(0) = +1; the
# uniform rule halves each factor's sum of shares, a gate held constant
# leaves all of it to the other factor. The softmax rule is x (R - s sum R).
def matmul_forward(a, b):
    """a (..., T, K) @ b (..., K, S), one matrix product per batch index."""
    out = np.zeros(a.shape[:-1] + b.shape[-1:])
    for index in np.ndindex(*a.shape[:-2]):
        for t in range(a.shape[-2]):
            for s in range(b.shape[-1]):
                out[index + (t, s)] = sum(a[index + (t, k)] * b[index + (k, s)] for k in range(a.shape[-1]))
    return out


def matmul_lrp(a, b, R, eps, share_a, share_b):
    """(R_a, R_b): R_a[t, k] = share_a sum_s z_tks R_ts / (y_ts + eps sgn y_ts),
    R_b[k, s] = share_b sum_t z_tks R_ts / (y_ts + eps sgn y_ts), with
    z_tks = a_tk b_ks (share 1/2 each: the uniform rule; 1 and 0: the
    second factor held constant)."""
    Ra, Rb = np.zeros(a.shape), np.zeros(b.shape)
    for index in np.ndindex(*a.shape[:-2]):
        A, B, Rm = a[index], b[index], R[index]
        Y = A @ B
        ratio = Rm / (Y + eps * np.where(Y >= 0, 1.0, -1.0))
        Z = A[:, :, None] * B[None, :, :]  # Z[t, k, s]
        Ra[index] = share_a * (Z * ratio[:, None, :]).sum(axis=2)
        Rb[index] = share_b * (Z * ratio[:, None, :]).sum(axis=0)
    return Ra, Rb


def matmul_gradient(a, b, G):
    """The product rule: (dL/da, dL/db) = (G b^T, a^T G) per matrix."""
    return G @ np.swapaxes(b, -1, -2), np.swapaxes(a, -1, -2) @ G


def attention_softmax(X):
    """exp(x_j) / sum_k exp(x_k) over the last axis; -inf scores get 0."""
    E = np.exp(X - X.max(axis=-1, keepdims=True))
    return E / E.sum(axis=-1, keepdims=True)


def attention_softmax_lrp(X, R):
    """AttnLRP's softmax rule x_j (R_j - s_j sum_k R_k), 0 where x_j is not finite."""
    S = attention_softmax(X)
    with np.errstate(invalid="ignore"):
        out = X * (R - S * R.sum(axis=-1, keepdims=True))
    return np.where(np.isfinite(X), out, 0.0)


def attention_softmax_gradient(X, G):
    """The Jacobian-vector product: sum_j G_j ds_j/dx_i with ds_j/dx_i = s_j (delta_ij - s_i)."""
    S = attention_softmax(X)
    out = np.zeros(X.shape)
    for index in np.ndindex(*X.shape[:-1]):
        s = S[index]
        J = np.diag(s) - np.outer(s, s)  # J[i, j] = ds_j / dx_i (symmetric)
        out[index] = J @ G[index]
    return out


# ---------------------------------------------------------------- token tensors and RMSNorm
# Written from docs/rules.md ("Token tensors and RMSNorm"): Embedding y[n, t] =
# W[ids[n, t]], relevance the sum over the embedding axis; Rearrange y.flat[j]
# = x.flat[index[j]] (0 where index[j] = -1), relevance scattered back and
# summed over repeats; Bias y = x + b, the input's epsilon share x R / (y + eps
# sgn y); RMSNorm y = gamma x / rms, rms = sqrt(mean(x^2) + eps), relevance
# with rms held constant (a diagonal linear map, the epsilon rule on it).
def embedding_forward(ids, W):
    out = np.zeros(ids.shape + (W.shape[1],))
    for index in np.ndindex(*ids.shape):
        out[index] = W[int(ids[index])]
    return out


def embedding_lrp(R):
    """What each token's vector receives, summed over its D values."""
    return R.sum(axis=-1)


def rearrange_forward(X, index, shape):
    N = X.shape[0]
    flat = X.reshape(N, -1)
    out = np.zeros((N, len(index)))
    for j, i in enumerate(index):
        if i >= 0:
            out[:, j] = flat[:, i]
    return out.reshape((N,) + tuple(shape))


def rearrange_lrp(X, index, R):
    """Each output's relevance back to the input value it copies (repeats add up)."""
    N = X.shape[0]
    out = np.zeros((N, X[0].size))
    flat = R.reshape(N, -1)
    for j, i in enumerate(index):
        if i >= 0:
            out[:, i] += flat[:, j]
    return out.reshape(X.shape)


def bias_lrp(X, b, R, rule, param=None):
    """y = x + b as a dense layer per element (weight 1, bias b): the dense
    rules above, one input per output (flat and ww give R)."""
    N = X.shape[0]
    B = np.broadcast_to(b, X.shape[1:]).reshape(-1)
    x, r = X.reshape(N, -1), R.reshape(N, -1)
    out = np.zeros_like(x)
    for k in range(x.shape[1]):
        if rule in ("flat", "ww"):
            out[:, k] = r[:, k]
        else:
            eps = {"simple": 1e-16, "epsilon": param}.get(rule, 1e-6)
            out[:, k] = dense_lrp(x[:, k:k + 1], np.ones((1, 1)), B[k:k + 1], r[:, k:k + 1], "epsilon", eps)[:, 0]
    return out.reshape(X.shape)


def rmsnorm_forward(X, gamma, eps):
    return X / np.sqrt((X ** 2).mean(axis=-1, keepdims=True) + eps) * gamma


def rmsnorm_lrp(X, gamma, eps, R, stabilizer):
    """rms held constant: y_j = sum_i z_ij with z_ij = x_i delta_ij gamma_j /
    rms, no bias; the epsilon rule on those contributions (``shares``)."""
    D = X.shape[-1]
    rows, Rr = X.reshape(-1, D), R.reshape(-1, D)
    out = np.empty_like(rows)
    for p, x in enumerate(rows):
        rms = np.sqrt((x ** 2).mean() + eps)
        Z = (x[:, None] * np.eye(D) * gamma[None, :] / rms)[None]
        out[p] = (shares(Z, None, "epsilon", stabilizer)[0] * Rr[p][None, :]).sum(axis=1)
    return out.reshape(X.shape)

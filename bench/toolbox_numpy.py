"""The LRP Toolbox's numpy algorithm, for comparison: each layer loops over
its output positions and, at each, forms the contributions z_ij of the patch
with a broadcast product (tensordot for the forward pass), as the toolbox's
modules/convolution.py and sumpool.py do. Written here from that
description; only what the benchmarks need (epsilon and alpha-beta)."""
import numpy as np

import lrpnb

na = np.newaxis


def _windows(H, W, h, w, s0, s1):
    for i in range((H - h) // s0 + 1):
        for j in range((W - w) // s1 + 1):
            yield i, j, slice(i * s0, i * s0 + h), slice(j * s1, j * s1 + w)


def forward(net, X):
    activations = [X]
    for layer in net.layers:
        x = activations[-1]
        if isinstance(layer, lrpnb.Convolution):
            h, w, d, n = layer.W.shape
            N, H, Wd, _ = x.shape
            Y = np.zeros((N, (H - h) // layer.stride[0] + 1, (Wd - w) // layer.stride[1] + 1, n), x.dtype)
            W = layer.W.astype(x.dtype)
            for i, j, si, sj in _windows(H, Wd, h, w, *layer.stride):
                Y[:, i, j, :] = np.tensordot(x[:, si, sj, :], W, axes=([1, 2, 3], [0, 1, 2])) + layer.B
            activations.append(Y)
        elif isinstance(layer, (lrpnb.SumPool, lrpnb.MaxPool)):
            hp, wp = layer.pool
            N, H, Wd, D = x.shape
            Y = np.zeros((N, (H - hp) // layer.stride[0] + 1, (Wd - wp) // layer.stride[1] + 1, D), x.dtype)
            for i, j, si, sj in _windows(H, Wd, hp, wp, *layer.stride):
                if isinstance(layer, lrpnb.SumPool):
                    Y[:, i, j, :] = x[:, si, sj, :].sum(axis=(1, 2)) / np.sqrt(hp * wp)
                else:
                    Y[:, i, j, :] = x[:, si, sj, :].max(axis=(1, 2))
            activations.append(Y)
        elif isinstance(layer, lrpnb.Linear):
            activations.append(x @ layer.W.astype(x.dtype) + layer.B)
        elif isinstance(layer, lrpnb.Rect):
            activations.append(np.maximum(x, 0))
        elif isinstance(layer, lrpnb.Flatten):
            activations.append(x.reshape(len(x), -1))
        else:
            raise ValueError(layer.describe())
    return activations


def _ratios(Z, B, rule, param, axes):
    if rule == "epsilon":
        Zs = Z.sum(axis=axes, keepdims=True) + B
        return Z / (Zs + param * np.where(Zs >= 0, 1, -1))
    alpha, beta = param, 1 - param
    Zp, Zn = Z * (Z > 0), Z * (Z < 0)
    Bp, Bn = (0, 0) if B is None else (B * (B > 0), B * (B < 0))
    return (alpha * Zp / (Zp.sum(axis=axes, keepdims=True) + Bp + 1e-16)
            + beta * Zn / (Zn.sum(axis=axes, keepdims=True) + Bn - 1e-16))


def explain(net, X, rule, param):
    """Relevance of the predicted class, the toolbox's way."""
    activations = forward(net, X)
    Y = activations[-1]
    R = np.zeros_like(Y)
    rows = np.arange(len(Y))
    R[rows, Y.argmax(axis=1)] = Y[rows, Y.argmax(axis=1)]
    for layer, x in zip(net.layers[::-1], activations[-2::-1]):
        if isinstance(layer, lrpnb.Convolution):
            h, w, d, n = layer.W.shape
            W = layer.W.astype(x.dtype)
            Rx = np.zeros_like(x)
            for i, j, si, sj in _windows(x.shape[1], x.shape[2], h, w, *layer.stride):
                Z = W[na] * x[:, si, sj, :, na]
                Q = _ratios(Z, layer.B[na, na, na, na], rule, param, (1, 2, 3))
                Rx[:, si, sj, :] += (Q * R[:, i:i + 1, j:j + 1, na, :]).sum(axis=4)
            R = Rx
        elif isinstance(layer, lrpnb.SumPool):
            hp, wp = layer.pool
            Rx = np.zeros_like(x)
            for i, j, si, sj in _windows(x.shape[1], x.shape[2], hp, wp, *layer.stride):
                Z = x[:, si, sj, :]
                Q = _ratios(Z, None if rule != "epsilon" else 0, rule, param, (1, 2))
                Rx[:, si, sj, :] += Q * R[:, i:i + 1, j:j + 1, :]
            R = Rx
        elif isinstance(layer, lrpnb.Linear):
            Z = layer.W[na].astype(x.dtype) * x[:, :, na]
            R = (_ratios(Z, layer.B[na, na], rule, param, 1) * R[:, na, :]).sum(axis=2)
        elif isinstance(layer, lrpnb.Flatten):
            R = R.reshape(x.shape)
    return R

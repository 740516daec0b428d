"""Caffe models: prototxt + caffemodel written here with seeded random weights
(through lrpnb's own schema), loaded, and their forward checked against
plain numpy computations of Caffe's layers written in this file."""
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("google.protobuf")

import lrpnb  # noqa: E402
from conftest import ROOT, SHARED, need_shared  # noqa: E402
from lrpnb.caffe_import.schema import PACKED, V1_TYPES  # noqa: E402

CAFFE = SHARED / "formats" / "caffe"
RNG = np.random.default_rng(24)


# ---------------------------------------------------------------- files
def write_caffemodel(path, weights, v1=False, legacy=False):
    """A caffemodel of ``weights`` {layer name: [arrays]}; ``v1``: V1 layers; ``legacy``: 4-d num/channels/
    height/width blob dimensions (2014-era files)."""
    net = PACKED["NetParameter"](name="test")
    for name, arrays in weights.items():
        layer = net.layers.add(name=name, type=V1_TYPES["NONE"]) if v1 else net.layer.add(name=name, type="X")
        for array in arrays:
            blob = layer.blobs.add()
            if legacy:
                dims = (1,) * (4 - array.ndim) + array.shape
                blob.num, blob.channels, blob.height, blob.width = dims
            else:
                blob.shape.dim.extend(array.shape)
            blob.data = np.asarray(array, "<f4").tobytes()
    path.write_bytes(net.SerializeToString())
    return path


def model(tmp_path, text, weights, v1=False, legacy=False, name="net"):
    proto = tmp_path / f"{name}.prototxt"
    proto.write_text(text)
    return proto, write_caffemodel(tmp_path / f"{name}.caffemodel", weights, v1, legacy)


def layer(name, kind, bottom, top, params=""):
    bottoms = "".join(f' bottom: "{b}"' for b in ([bottom] if isinstance(bottom, str) else bottom))
    return f'layer {{ name: "{name}" type: "{kind}"{bottoms} top: "{top}" {params} }}\n'


def v1_layer(name, kind, bottom, top, params=""):
    bottoms = "".join(f' bottom: "{b}"' for b in ([bottom] if isinstance(bottom, str) else bottom))
    return f'layers {{ name: "{name}" type: {kind}{bottoms} top: "{top}" blobs_lr: 1 {params} }}\n'


def header(shape, style="input_shape"):
    if style == "input_shape":
        return 'input: "data" input_shape { ' + " ".join(f"dim: {d}" for d in shape) + " }\n"
    if style == "input_dim":
        return 'input: "data" ' + " ".join(f"input_dim: {d}" for d in shape) + "\n"
    return layer("data", "Input", [], "data", "input_param { shape { " + " ".join(f"dim: {d}" for d in shape)
                 + " } }").replace(" bottom", "")


def forward(net, x):
    """lrpnb's forward of a Caffe-layout batch (N, C, H, W) or (N, D)."""
    X = x.transpose(0, 2, 3, 1) if x.ndim == 4 else x
    return np.asarray(net.forward(np.ascontiguousarray(X, dtype=np.float32)))


def nchw(y):
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


# ---------------------------------------------------------------- Caffe's layers in numpy
def conv(x, W, b, stride=(1, 1), pad=(0, 0), dilation=(1, 1), group=1):
    """Caffe's convolution of (N, C, H, W) by filters (n, C/group, kh, kw), in float64."""
    n, cg, kh, kw = W.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    eh, ew = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    windows = np.lib.stride_tricks.sliding_window_view(xp, (eh, ew), axis=(2, 3))
    windows = windows[:, :, ::stride[0], ::stride[1], ::dilation[0], ::dilation[1]]  # (N, C, Ho, Wo, kh, kw)
    per = n // group
    parts = [np.einsum("nchwij,ocij->nohw", windows[:, g * cg:(g + 1) * cg], W[g * per:(g + 1) * per],
                       optimize=True) for g in range(group)]
    return np.concatenate(parts, axis=1) + np.asarray(b, np.float64)[None, :, None, None]


def caffe_pool(x, k, s, p, method):
    """Caffe's PoolingLayer::Forward_cpu, transcribed: ceil output size, AVE divided by the window clipped to
    the padded image."""
    N, C, H, W = x.shape
    sizes = []
    for size, kk, ss, pp in zip((H, W), k, s, p):
        out = -(-(size + 2 * pp - kk) // ss) + 1
        if pp and (out - 1) * ss >= size + pp:
            out -= 1
        sizes.append(out)
    y = np.zeros((N, C) + tuple(sizes))
    for i in range(sizes[0]):
        for j in range(sizes[1]):
            hs, ws = i * s[0] - p[0], j * s[1] - p[1]
            he, we = min(hs + k[0], H + p[0]), min(ws + k[1], W + p[1])
            count = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, H), min(we, W)
            window = x[:, :, hs:he, ws:we]
            y[:, :, i, j] = window.max(axis=(2, 3)) if method == "MAX" else window.sum(axis=(2, 3)) / count
    return y


def caffe_lrn(x, size, alpha, beta, k):
    C = x.shape[1]
    y = np.empty_like(x)
    for c in range(C):
        lo, hi = max(0, c - (size - 1) // 2), min(C, c + (size - 1) // 2 + 1)
        y[:, c] = x[:, c] / (k + alpha / size * (x[:, lo:hi] ** 2).sum(axis=1)) ** beta
    return y


def inner(x, W, b):
    return x.reshape(len(x), -1) @ W.T + b


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def close(actual, expected, tol=1e-4):
    scale = max(np.abs(expected).max(), 1e-6)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert np.abs(actual - expected).max() <= tol * scale


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------- layers, both syntaxes
@pytest.mark.parametrize("style", ["input_shape", "input_dim", "Input"])
def test_convolution_pool_relu_lrn_innerproduct(tmp_path, style):
    W1, b1 = randn(6, 2, 3, 3) * 0.3, randn(6)
    W2, b2 = randn(5, 6 * 3 * 2), randn(5)
    text = header((2, 4, 9, 8), style) + layer(
        "conv1", "Convolution", "data", "conv1", "convolution_param { num_output: 6 kernel_size: 3 pad: 1 "
        "stride: 2 group: 2 }") + layer("relu1", "ReLU", "conv1", "conv1") + layer(
        "norm1", "LRN", "conv1", "norm1", "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 }") + layer(
        "pool1", "Pooling", "norm1", "pool1", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }") + layer(
        "fc", "InnerProduct", "pool1", "fc", "inner_product_param { num_output: 5 } param { lr_mult: 1 }") + layer(
        "prob", "Softmax", "fc", "prob")
    proto, weights = model(tmp_path, text, {"conv1": [W1, b1], "fc": [W2, b2], "loss": [randn(1)]})
    net = lrpnb.load(proto, weights=weights)
    assert net.input_shape == (9, 8, 4)
    x = randn(2, 4, 9, 8)
    y = np.maximum(conv(x, W1, b1, (2, 2), (1, 1), group=2), 0)
    y = caffe_pool(caffe_lrn(y, 3, 0.5, 0.75, 2.0), (2, 2), (2, 2), (0, 0), "MAX")
    assert y.shape[2:] == (3, 2)  # ceil: (5 - 2) / 2 rounds up to 2, + 1
    close(forward(net, x), softmax(inner(y, W2, b2)))


def test_v1_layers_with_legacy_blobs(tmp_path):
    W1, b1 = randn(3, 2, 2, 2), randn(3)
    W2, b2 = randn(4, 3 * 3 * 3), randn(4)
    text = header((1, 2, 4, 4), "input_dim") + v1_layer(
        "conv", "CONVOLUTION", "data", "conv", "convolution_param { num_output: 3 kernel_size: 2 } "
        "weight_decay: 1") + v1_layer("relu", "RELU", "conv", "conv") + v1_layer(
        "drop", "DROPOUT", "conv", "conv", "dropout_param { dropout_ratio: 0.5 }") + v1_layer(
        "flat", "FLATTEN", "conv", "flat") + v1_layer(
        "ip", "INNER_PRODUCT", "flat", "ip", "inner_product_param { num_output: 4 }")
    proto, weights = model(tmp_path, text, {"conv": [W1, b1], "ip": [W2, b2]}, v1=True, legacy=True)
    net = lrpnb.load(proto, weights=weights)
    x = randn(3, 2, 4, 4)
    close(forward(net, x), inner(np.maximum(conv(x, W1, b1), 0), W2, b2))


def test_v1_layer_types(tmp_path):
    W1, b1, W2, b2 = randn(3, 2, 1, 1), randn(3), randn(3, 2, 3, 3), randn(3)
    Wf, bf = randn(4, 6 * 3 * 3), randn(4)  # ceil mode: 5 rows pool to 3
    text = header((2, 2, 5, 5), "input_dim") + v1_layer("split", "SPLIT", "data", "d1").replace(
        'top: "d1"', 'top: "d1" top: "d2"') + v1_layer(
        "a", "CONVOLUTION", "d1", "a", "convolution_param { num_output: 3 kernel_size: 1 }") + v1_layer(
        "sa", "SIGMOID", "a", "a") + v1_layer(
        "b", "CONVOLUTION", "d2", "b", "convolution_param { num_output: 3 kernel_size: 3 pad: 1 }") + v1_layer(
        "tb", "TANH", "b", "b") + v1_layer("sum", "ELTWISE", ["a", "b"], "sum", "eltwise_param { operation: SUM "
                                                                                 "}") + v1_layer(
        "cat", "CONCAT", ["sum", "a"], "cat", "concat_param { concat_dim: 1 }") + v1_layer(
        "norm", "LRN", "cat", "norm", "lrn_param { local_size: 3 alpha: 0.3 beta: 0.5 }") + v1_layer(
        "pool", "POOLING", "norm", "pool", "pooling_param { pool: AVE kernel_size: 2 stride: 2 }") + v1_layer(
        "fc", "INNER_PRODUCT", "pool", "fc", "inner_product_param { num_output: 4 }") + v1_layer(
        "prob", "SOFTMAX", "fc", "prob")
    proto, weights = model(tmp_path, text, {"a": [W1, b1], "b": [W2, b2], "fc": [Wf, bf]}, v1=True)
    net = lrpnb.load(proto, weights=weights)
    x = randn(2, 2, 5, 5)
    a = 1 / (1 + np.exp(-conv(x, W1, b1)))
    y = np.concatenate([a + np.tanh(conv(x, W2, b2, pad=(1, 1))), a], axis=1)
    y = caffe_pool(caffe_lrn(y, 3, 0.3, 0.5, 1.0), (2, 2), (2, 2), (0, 0), "AVE")
    close(forward(net, x), softmax(inner(y, Wf, bf)))


@pytest.mark.parametrize("pad,stride,kernel", [(0, 2, 3), (1, 2, 3), (1, 3, 3), (2, 2, 3), (0, 1, 2)])
def test_average_pool_divisor_and_ceil(tmp_path, pad, stride, kernel):
    b = randn(2)  # a 1x1 convolution first: the pool reads a computed image
    text = header((1, 2, 8, 7)) + layer(
        "c", "Convolution", "data", "c", "convolution_param { num_output: 2 kernel_size: 1 }") + layer(
        "p", "Pooling", "c", "p", f"pooling_param {{ pool: AVE kernel_size: {kernel} stride: {stride} "
        f"pad: {pad} }}") + layer("f", "Flatten", "p", "f") + layer(
        "fc", "InnerProduct", "f", "fc", "inner_product_param { num_output: 3 }")
    W = randn(2, 2, 1, 1)
    x = randn(2, 2, 8, 7)
    pooled = caffe_pool(conv(x, W, b), (kernel, kernel), (stride, stride), (pad, pad), "AVE")
    Wf, bf = randn(3, pooled[0].size), randn(3)
    proto, weights = model(tmp_path, text, {"c": [W, b], "fc": [Wf, bf]})
    net = lrpnb.load(proto, weights=weights)
    close(forward(net, x), inner(pooled, Wf, bf))


def test_stride_beyond_kernel_without_padding_is_refused(tmp_path):
    text = header((1, 1, 5, 5)) + layer("p", "Pooling", "data", "p", "pooling_param { pool: MAX kernel_size: 1 "
                                                                     "stride: 3 }")
    proto, weights = model(tmp_path, text, {"unused": [randn(2)]})
    with pytest.raises(ValueError, match=r"net\.prototxt: layer 'p' \(Pooling\): .*outside the image"):
        lrpnb.load(proto, weights=weights)


def test_inception_block_concat_global_pool(tmp_path):
    Wa, ba, Wb, bb = randn(3, 4, 1, 1), randn(3), randn(2, 4, 3, 3), randn(2)
    Wf, bf = randn(6, 5), randn(6)
    text = header((2, 4, 6, 6)) + layer("split", "Split", "data", "d2") + layer(
        "a", "Convolution", "data", "a", "convolution_param { num_output: 3 kernel_size: 1 }") + layer(
        "b", "Convolution", "d2", "b", "convolution_param { num_output: 2 kernel_h: 3 kernel_w: 3 pad_h: 1 "
        "pad_w: 1 }") + layer("cat", "Concat", ["a", "b"], "cat") + layer(
        "gap", "Pooling", "cat", "gap", "pooling_param { pool: AVE global_pooling: true }") + layer(
        "fc", "InnerProduct", "gap", "fc", "inner_product_param { num_output: 6 }")
    proto, weights = model(tmp_path, text, {"a": [Wa, ba], "b": [Wb, bb], "fc": [Wf, bf]})
    net = lrpnb.load(proto, weights=weights)
    x = randn(2, 4, 6, 6)
    cat = np.concatenate([conv(x, Wa, ba), conv(x, Wb, bb, pad=(1, 1))], axis=1)
    close(forward(net, x), inner(cat.mean(axis=(2, 3)), Wf, bf))


def test_resnet_block_batchnorm_scale_eltwise(tmp_path):
    C = 4
    Wc, Wf, bf = randn(C, C, 3, 3) * 0.3, randn(3, C * 5 * 5), randn(3)
    mean, var, factor = randn(C) * 5, np.abs(randn(C)) * 5 + 0.5, np.array([5.0], np.float32)
    gamma, beta = randn(C), randn(C)
    m2, v2, g2, be2 = randn(C), np.abs(randn(C)) + 0.5, randn(C), randn(C)
    text = header((2, C, 5, 5)) + layer(
        "conv", "Convolution", "data", "conv", "convolution_param { num_output: 4 kernel_size: 3 pad: 1 "
        "bias_term: false }") + layer("bn", "BatchNorm", "conv", "conv", "batch_norm_param { use_global_stats: "
                                      "true }") + layer(
        "sc", "Scale", "conv", "conv", "scale_param { bias_term: true }") + layer("relu", "ReLU", "conv", "conv") + \
        layer("bn2", "BatchNorm", "data", "dn") + layer("sc2", "Scale", "dn", "dn", "scale_param { bias_term: true }") \
        + layer("sum", "Eltwise", ["conv", "dn"], "sum", "eltwise_param { operation: SUM }") + layer(
            "fc", "InnerProduct", "sum", "fc", "inner_product_param { num_output: 3 }")
    proto, weights = model(tmp_path, text, {
        "conv": [Wc], "bn": [mean, var, factor], "sc": [gamma, beta], "bn2": [m2, v2, np.ones(1, np.float32)],
        "sc2": [g2, be2], "fc": [Wf, bf]})
    net = lrpnb.load(proto, weights=weights)
    assert [type(n.layer).__name__ for n in net.nodes].count("BatchNorm") == 1  # the first pair folds into conv
    x = randn(2, C, 5, 5)

    def bn(y, m, v, g, b):
        return (y - m[:, None, None]) / np.sqrt(v[:, None, None] + 1e-5) * g[:, None, None] + b[:, None, None]
    y = np.maximum(bn(conv(x, Wc, np.zeros(C), pad=(1, 1)), mean / 5, var / 5, gamma, beta), 0) + bn(x, m2, v2, g2, be2)
    close(forward(net, x), inner(y, Wf, bf))


def test_layer_variants_and_training_layers(tmp_path):
    Wc, bc = randn(4, 3, 3, 2), randn(4)
    Wt = randn(4 * 5 * 3, 5)  # InnerProduct transpose: true stores (D, N)
    text = 'name: "variants"\n' + header((2, 3, 9, 8)) + layer(
        "train_data", "Data", [], "label", "include { phase: TRAIN } data_param { source: \"x\" }").replace(
        " bottom", "") + layer(
        "conv", "Convolution", "data", "conv", "convolution_param { num_output: 4 kernel_size: 3 kernel_size: 2 "
        "pad: 2 pad: 1 stride: 1 stride: 2 dilation: 2 weight_filler { type: \"xavier\" } }") + layer(
        "sig", "Sigmoid", "conv", "conv") + layer(
        "pool", "Pooling", "conv", "pool", "pooling_param { pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 "
        "stride_w: 2 pad_h: 1 pad_w: 1 }") + layer("tanh", "TanH", "pool", "pool") + layer(
        "leaky", "ReLU", "pool", "pool", "relu_param { negative_slope: 0.1 }") + layer(
        "ip", "InnerProduct", "pool", "ip", "inner_product_param { num_output: 5 bias_term: false transpose: true "
        "}") + layer("loss", "SoftmaxWithLoss", ["ip", "label"], "loss") + layer(
        "acc", "Accuracy", ["ip", "label"], "acc", "include { phase: TEST }")
    proto, weights = model(tmp_path, text, {"conv": [Wc, bc], "ip": [Wt], "loss_extra": [randn(3)]}, v1=True,
                           legacy=True)
    net = lrpnb.load(proto, weights=weights)
    x = randn(2, 3, 9, 8)
    y = 1 / (1 + np.exp(-conv(x, Wc, bc, stride=(1, 2), pad=(2, 1), dilation=(2, 2))))
    y = caffe_pool(y, (3, 2), (2, 2), (1, 1), "MAX")
    assert y.shape[1:] == (4, 5, 3)  # rows: ceil((9 + 2 - 3) / 2) + 1
    y = np.tanh(y)
    y = np.where(y > 0, y, 0.1 * y)
    close(forward(net, x), y.reshape(2, -1) @ Wt)


def test_double_and_unpacked_blobs(tmp_path):
    from lrpnb.caffe_import.schema import TEXT

    W, b = randn(3, 2, 2, 2), randn(3)
    text = header((1, 2, 3, 3)) + layer("c", "Convolution", "data", "c", "convolution_param { num_output: 3 "
                                                                        "kernel_size: 2 }") + layer(
        "f", "Flatten", "c", "f")
    proto = tmp_path / "net.prototxt"
    proto.write_text(text + layer("ip", "InnerProduct", "f", "ip", "inner_product_param { num_output: 2 }"))
    Wf, bf = randn(2, 12), randn(2)
    for kind in ("double", "unpacked"):
        net = TEXT["NetParameter"]()
        for name, arrays in (("c", [W, b]), ("ip", [Wf, bf])):
            entry = net.layer.add(name=name)
            for array in arrays:
                blob = entry.blobs.add()
                blob.shape.dim.extend(array.shape)
                (blob.double_data if kind == "double" else blob.data).extend(array.ravel().tolist())
        path = tmp_path / f"{kind}.caffemodel"
        path.write_bytes(net.SerializeToString())
        loaded = lrpnb.load(proto, weights=path)
        x = randn(2, 2, 3, 3)
        close(forward(loaded, x), inner(conv(x, W, b), Wf, bf))


def test_weights_in_the_definition(tmp_path):
    W, b = randn(2, 3), randn(2)
    blobs = "".join("blobs { " + " ".join(f"data: {v!r}" for v in a.ravel().tolist()) + " shape { "
                    + " ".join(f"dim: {d}" for d in a.shape) + " } }" for a in (W, b))
    proto = tmp_path / "net.prototxt"
    proto.write_text(header((1, 3)) + layer("ip", "InnerProduct", "data", "ip",
                                                         "inner_product_param { num_output: 2 } " + blobs))
    net = lrpnb.load(proto)
    assert net.input_shape == (3,)
    x = randn(4, 3)
    close(forward(net, x), inner(x, W, b))
    proto.write_text(header((1, 3)) + layer("ip", "InnerProduct", "data", "ip",
                                                         "inner_product_param { num_output: 2 }"))
    with pytest.raises(ValueError, match=r"net\.prototxt: layer 'ip' \(InnerProduct\): no weights.*--weights"):
        lrpnb.load(proto)


def bn_scale(y, mean, var, factor, gamma, beta, eps=1e-5):
    """Caffe's BatchNorm (moving sums divided by the scale factor) then Scale, per channel."""
    m, v = mean / factor, var / factor
    return ((y - m[:, None, None]) / np.sqrt(v[:, None, None] + eps)) * gamma[:, None, None] + beta[:, None, None]


def resnet50(rng, size=64):
    """A ResNet-50 in Caffe's form (the ResNet authors' deploy files: conv + BatchNorm + Scale, in-place
    ReLU, Eltwise SUM; blocks 3, 4, 6, 3), its weights, and a numpy forward of it."""
    text, weights, steps = header((1, 3, size, size)), {}, []

    def conv_bn(name, bottom, top, n, c, k, stride, pad, relu):
        nonlocal text
        text += layer(name, "Convolution", bottom, top, f"convolution_param {{ num_output: {n} kernel_size: {k} "
                      f"pad: {pad} stride: {stride} bias_term: false }}")
        text += layer("bn" + name, "BatchNorm", top, top, "batch_norm_param { use_global_stats: true }")
        text += layer("scale" + name, "Scale", top, top, "scale_param { bias_term: true }")
        W = (rng.standard_normal((n, c, k, k)) * np.sqrt(2 / (c * k * k))).astype(np.float32)
        stats = [rng.standard_normal(n).astype(np.float32) * 3, rng.uniform(1, 4, n).astype(np.float32) * 3,
                 np.array([3.0], np.float32)]
        affine = [rng.uniform(0.5, 1, n).astype(np.float32), rng.standard_normal(n).astype(np.float32) * 0.1]
        weights.update({name: [W], "bn" + name: stats, "scale" + name: affine})
        if relu:
            text += layer(name + "_relu", "ReLU", top, top)
        steps.append((top, bottom, lambda y, W=W, stats=stats, affine=affine, stride=stride, pad=pad, relu=relu:
                      (np.maximum if relu else lambda a, _: a)(bn_scale(conv(y, W, np.zeros(len(W)),
                                                                             (stride,) * 2, (pad,) * 2),
                                                                        *stats, *affine), 0)))

    conv_bn("conv1", "data", "conv1", 64, 3, 7, 2, 3, True)
    text += layer("pool1", "Pooling", "conv1", "pool1", "pooling_param { kernel_size: 3 stride: 2 pool: MAX }")
    steps.append(("pool1", "conv1", lambda y: caffe_pool(y, (3, 3), (2, 2), (0, 0), "MAX")))
    bottom, channels = "pool1", 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=2):
        for block in range(blocks):
            name = f"{stage}{'abcdef'[block]}"
            stride = 2 if block == 0 and stage > 2 else 1
            if block == 0:
                conv_bn(f"res{name}_branch1", bottom, f"res{name}_branch1", 4 * width, channels, 1, stride, 0, False)
            conv_bn(f"res{name}_branch2a", bottom, f"res{name}_branch2a", width, channels, 1, stride, 0, True)
            conv_bn(f"res{name}_branch2b", f"res{name}_branch2a", f"res{name}_branch2b", width, width, 3, 1, 1, True)
            conv_bn(f"res{name}_branch2c", f"res{name}_branch2b", f"res{name}_branch2c", 4 * width, width, 1, 1, 0,
                    False)
            shortcut = f"res{name}_branch1" if block == 0 else bottom
            text += layer(f"res{name}", "Eltwise", [shortcut, f"res{name}_branch2c"], f"res{name}")
            text += layer(f"res{name}_relu", "ReLU", f"res{name}", f"res{name}")
            steps.append((f"res{name}", (shortcut, f"res{name}_branch2c"), lambda a, b: np.maximum(a + b, 0)))
            bottom, channels = f"res{name}", 4 * width
    text += layer("pool5", "Pooling", bottom, "pool5", "pooling_param { pool: AVE global_pooling: true }")
    text += layer("fc1000", "InnerProduct", "pool5", "fc1000", "inner_product_param { num_output: 1000 }")
    Wf, bf = randn(1000, 2048) * 0.03, randn(1000)
    weights["fc1000"] = [Wf, bf]

    def forward_numpy(x):
        values = {"data": x.astype(np.float64)}
        for top, reads, step in steps:
            values[top] = step(*(values[b] for b in ((reads,) if isinstance(reads, str) else reads)))
        return inner(values[bottom].mean(axis=(2, 3)), Wf, bf)
    return text, weights, forward_numpy


def test_resnet50_in_caffe_form(tmp_path):
    rng = np.random.default_rng(50)
    text, weights, forward_numpy = resnet50(rng)
    proto, path = model(tmp_path, text, weights)
    net = lrpnb.load(proto, weights=path)
    # every BatchNorm and Scale folds into its convolution: 53 convolutions, 16 sums, 49 ReLUs
    kinds = [type(node.layer).__name__ for node in net.nodes]
    assert "BatchNorm" not in kinds and kinds.count("Convolution") == 53 and kinds.count("Add") == 16
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    close(forward(net, x), forward_numpy(x))


def test_googlenet_inception_module(tmp_path):
    branches = {"1x1": (8, 16, 1), "3x3_reduce": (4, 16, 1), "3x3": (8, 4, 3), "5x5_reduce": (2, 16, 1),
                "5x5": (4, 2, 5), "pool_proj": (4, 16, 1)}
    weights = {f"inception/{k}": [randn(n, c, s, s) * 0.3, randn(n)] for k, (n, c, s) in branches.items()}
    text = header((2, 16, 7, 7))

    def conv_relu(name, bottom, pad=0):
        n, _, size = branches[name]
        return layer(f"inception/{name}", "Convolution", bottom, f"inception/{name}",
                     f"convolution_param {{ num_output: {n} kernel_size: {size} pad: {pad} }}") + layer(
            f"inception/relu_{name}", "ReLU", f"inception/{name}", f"inception/{name}")
    text += conv_relu("1x1", "data") + conv_relu("3x3_reduce", "data") + conv_relu("3x3", "inception/3x3_reduce", 1)
    text += conv_relu("5x5_reduce", "data") + conv_relu("5x5", "inception/5x5_reduce", 2)
    text += layer("inception/pool", "Pooling", "data", "inception/pool",
                  "pooling_param { pool: MAX kernel_size: 3 stride: 1 pad: 1 }") + conv_relu("pool_proj",
                                                                                              "inception/pool")
    text += layer("inception/output", "Concat", ["inception/1x1", "inception/3x3", "inception/5x5",
                                                 "inception/pool_proj"], "inception/output")
    text += layer("pool", "Pooling", "inception/output", "pool", "pooling_param { pool: AVE kernel_size: 7 "
                                                                 "stride: 1 }")
    text += layer("classifier", "InnerProduct", "pool", "classifier", "inner_product_param { num_output: 10 }")
    weights["classifier"] = [randn(10, 24), randn(10)]
    proto, path = model(tmp_path, text, weights)
    net = lrpnb.load(proto, weights=path)
    x = randn(2, 16, 7, 7)

    def branch(name, y, pad=0):
        return np.maximum(conv(y, *weights[f"inception/{name}"], pad=(pad, pad)), 0)
    pooled = caffe_pool(x, (3, 3), (1, 1), (1, 1), "MAX")
    out = np.concatenate([branch("1x1", x), branch("3x3", branch("3x3_reduce", x), 1),
                          branch("5x5", branch("5x5_reduce", x), 2), branch("pool_proj", pooled)], axis=1)
    close(forward(net, x), inner(out.mean(axis=(2, 3)), *weights["classifier"]))


def epsilon_lrp_torch(x, steps, eps):
    """zennit's rules in plain torch autograd (float64): Epsilon(eps) on the affine steps ("lin"), its Norm
    rule (Epsilon(1e-6)) on average pools ("norm"), maxima take all on max pools ("max"), ReLU passes; the
    predicted class's score is the relevance that starts."""
    import torch

    acts = [torch.tensor(x, dtype=torch.float64)]
    for kind, step in steps:
        acts.append(torch.relu(acts[-1]) if kind == "relu" else step(acts[-1]))
    out = acts[-1]
    rows = torch.arange(len(out))
    R = torch.zeros_like(out)
    R[rows, out.argmax(1)] = out[rows, out.argmax(1)]
    for (kind, step), a in zip(steps[::-1], acts[-2::-1]):
        if kind == "relu":
            continue
        R = lrp_step(a, step, R, eps if kind == "lin" else 1e-6, kind == "max")
    return R.numpy()


def lrp_step(a, step, R, eps, maxima=False):
    """The relevance of ``a`` from the relevance ``R`` of ``step(a)``: the epsilon rule (z-trick), or all to
    the maxima."""
    import torch

    a = a.detach().requires_grad_(True)
    z = step(a)
    if maxima:
        (z * R).sum().backward()
        return a.grad
    (z * (R / (z + eps * torch.where(z >= 0, 1.0, -1.0))).detach()).sum().backward()
    return (a * a.grad).detach()


def explained_chain(tmp_path):
    """A Caffe chain (grouped padded convolution, ReLU, max pool, convolution,
    ReLU, average pool, two dense layers) with seeded weights, and lrpnb's
    epsilon-0.1 relevance of a random input: (x NCHW, its relevance NHWC,
    the weights W1, b1, ..., W4, b4)."""
    rng = np.random.default_rng(3)
    W1, b1, W2, b2 = [rng.standard_normal(s).astype(np.float32) for s in ((6, 2, 3, 3), (6,), (4, 6, 3, 3), (4,))]
    W3, b3, W4, b4 = [rng.standard_normal(s).astype(np.float32) for s in ((8, 4 * 4 * 3), (8,), (5, 8), (5,))]
    text = header((2, 4, 12, 11)) + layer(
        "c1", "Convolution", "data", "c1", "convolution_param { num_output: 6 kernel_size: 3 pad: 1 group: 2 }") + \
        layer("r1", "ReLU", "c1", "c1") + layer("p1", "Pooling", "c1", "p1", "pooling_param { pool: MAX kernel_size: "
                                                                           "3 stride: 2 }") + layer(
        "c2", "Convolution", "p1", "c2", "convolution_param { num_output: 4 kernel_size: 3 pad: 1 }") + layer(
        "r2", "ReLU", "c2", "c2") + layer("p2", "Pooling", "c2", "p2", "pooling_param { pool: AVE kernel_size: 3 "
                                                                       "stride: 2 pad: 1 }") + layer(
        "fc1", "InnerProduct", "p2", "fc1", "inner_product_param { num_output: 8 }") + layer(
        "r3", "ReLU", "fc1", "fc1") + layer("fc2", "InnerProduct", "fc1", "fc2", "inner_product_param { num_output: "
                                                                                 "5 }")
    proto, path = model(tmp_path, text, {"c1": [W1, b1], "c2": [W2, b2], "fc1": [W3, b3], "fc2": [W4, b4]})
    net = lrpnb.load(proto, weights=path)
    x = rng.standard_normal((2, 4, 12, 11))
    relevance = np.asarray(net.explain(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), rule="epsilon", param=0.1))
    return x, relevance, (W1, b1, W2, b2, W3, b3, W4, b4)


def test_relevance_equals_zennits_rules_in_torch(tmp_path):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, relevance, (W1, b1, W2, b2, W3, b3, W4, b4) = explained_chain(tmp_path)

    def T(array):
        return torch.tensor(array, dtype=torch.float64)
    steps = [("lin", lambda a: F.conv2d(a, T(W1), T(b1), padding=1, groups=2)), ("relu", None),
             ("max", lambda a: F.max_pool2d(a, 3, 2, ceil_mode=True)),
             ("lin", lambda a: F.conv2d(a, T(W2), T(b2), padding=1)), ("relu", None),
             ("norm", lambda a: F.avg_pool2d(a, 3, 2, 1, ceil_mode=True, count_include_pad=True)),
             ("lin", lambda a: a.reshape(len(a), -1) @ T(W3).T + T(b3)), ("relu", None),
             ("lin", lambda a: a @ T(W4).T + T(b4))]
    expected = epsilon_lrp_torch(x, steps, 0.1).transpose(0, 2, 3, 1)
    assert np.abs(relevance - expected).max() <= 1e-6 * np.abs(expected).max()


def test_relevance_equals_zennit_itself(tmp_path):
    """The same network rebuilt in torch and explained by zennit (where it is
    installed: the peers extra), Epsilon(0.1) on convolutions and dense layers,
    Norm on the average pool, Pass on ReLU, a plain gradient through max pools."""
    torch = pytest.importorskip("torch")
    try:
        import zennit
    except Exception as error:  # noqa: BLE001 - absent, or broken by a mismatched torchvision
        pytest.skip(f"needs zennit (the peers extra): {type(error).__name__}: {error}")
    from zennit.attribution import Gradient
    from zennit.composites import LayerMapComposite
    from zennit.rules import Epsilon, Norm, Pass

    nn = torch.nn
    x, relevance, (W1, b1, W2, b2, W3, b3, W4, b4) = explained_chain(tmp_path)

    torch_net = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
                              nn.Conv2d(6, 4, 3, padding=1), nn.ReLU(),
                              nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=True), nn.Flatten(),
                              nn.Linear(48, 8), nn.ReLU(), nn.Linear(8, 5)).double()
    with torch.no_grad():
        for module, (W, b) in zip([torch_net[0], torch_net[3], torch_net[7], torch_net[9]],
                                  [(W1, b1), (W2, b2), (W3, b3), (W4, b4)]):
            module.weight.copy_(torch.tensor(W, dtype=torch.float64))
            module.bias.copy_(torch.tensor(b, dtype=torch.float64))
    composite = LayerMapComposite(layer_map=[(nn.ReLU, Pass()), (nn.AvgPool2d, Norm()),
                                             ((nn.Conv2d, nn.Linear), Epsilon(0.1))])
    X = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    with Gradient(model=torch_net, composite=composite) as attributor:
        scores = torch_net(X).detach()
        start = torch.zeros_like(scores)
        rows = torch.arange(len(scores))
        start[rows, scores.argmax(1)] = scores[rows, scores.argmax(1)]
        _, expected = attributor(X, start)
    expected = expected.numpy().transpose(0, 2, 3, 1)
    assert zennit is not None and np.abs(relevance - expected).max() <= 1e-6 * np.abs(expected).max()


def test_residual_relevance_equals_zennits_rules_in_torch(tmp_path):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(5)
    C = 3
    W, Wf, bf = rng.standard_normal((C, C, 3, 3)), rng.standard_normal((4, C)), rng.standard_normal(4)
    stats = [rng.standard_normal(C), rng.uniform(1, 2, C), np.array([2.0])]
    gamma, beta = rng.uniform(0.5, 1.5, C), rng.standard_normal(C)
    text = header((2, C, 5, 6)) + layer(
        "conv", "Convolution", "data", "conv", "convolution_param { num_output: 3 kernel_size: 3 pad: 1 bias_term: "
        "false }") + layer("bn", "BatchNorm", "conv", "conv") + layer(
        "sc", "Scale", "conv", "conv", "scale_param { bias_term: true }") + layer("relu", "ReLU", "conv", "conv") + \
        layer("sum", "Eltwise", ["data", "conv"], "sum") + layer("relu2", "ReLU", "sum", "sum") + layer(
            "gap", "Pooling", "sum", "gap", "pooling_param { pool: AVE global_pooling: true }") + layer(
            "fc", "InnerProduct", "gap", "fc", "inner_product_param { num_output: 4 }")
    arrays = {"conv": [W], "bn": stats, "sc": [gamma, beta], "fc": [Wf, bf]}
    proto, path = model(tmp_path, text, {k: [np.float32(v) for v in a] for k, a in arrays.items()})
    net = lrpnb.load(proto, weights=path)
    x = rng.standard_normal((2, C, 5, 6))
    relevance = np.asarray(net.explain(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), rule="epsilon", param=0.1))

    def T(array):
        return torch.tensor(np.float32(array), dtype=torch.float64)
    m, v = T(stats[0] / stats[2]), T(stats[1] / stats[2])

    def conv_bn(a):
        y = F.conv2d(a, T(W), padding=1)
        return (y - m[:, None, None]) / torch.sqrt(v[:, None, None] + 1e-5) * T(gamma)[:, None, None] + \
            T(beta)[:, None, None]
    x0 = torch.tensor(x)
    a = torch.relu(conv_bn(x0))
    y = torch.relu(a + x0)
    g = y.mean(axis=(2, 3))
    out = g @ T(Wf).T + T(bf)
    R = torch.zeros_like(out)
    rows = torch.arange(2)
    R[rows, out.argmax(1)] = out[rows, out.argmax(1)]
    R = lrp_step(y, lambda t: t.mean(axis=(2, 3)), lrp_step(g, lambda t: t @ T(Wf).T + T(bf), R, 0.1), 1e-6)
    # the Eltwise sum: zennit's Norm rule; the BatchNorm and Scale folded into the convolution
    share = R / ((a + x0) + 1e-6 * torch.where(a + x0 >= 0, 1.0, -1.0))
    expected = x0 * share + lrp_step(x0, conv_bn, a * share, 0.1)
    expected = expected.numpy().transpose(0, 2, 3, 1)
    assert np.abs(relevance - expected).max() <= 1e-6 * np.abs(expected).max()


# ---------------------------------------------------------------- CaffeNet
CAFFENET = {"conv1": (96, 3, 11, 11), "conv2": (256, 48, 5, 5), "conv3": (384, 256, 3, 3),
            "conv4": (384, 192, 3, 3), "conv5": (256, 192, 3, 3), "fc6": (4096, 9216), "fc7": (4096, 4096),
            "fc8": (1000, 4096)}


def test_caffenet_loads_fast_and_runs(tmp_path):
    proto = need_shared(CAFFE / "caffenet_deploy_sequential.prototxt")
    rng = np.random.default_rng(0)
    weights = {name: [rng.standard_normal(shape, dtype=np.float32) * 0.01, np.zeros(shape[0], np.float32)]
               for name, shape in CAFFENET.items()}
    path = write_caffemodel(tmp_path / "caffenet.caffemodel", weights)
    assert path.stat().st_size > 200e6
    start = time.perf_counter()
    net = lrpnb.load(proto, weights=path)
    assert time.perf_counter() - start < 15  # linear in the size: about a second here
    assert net.input_shape == (227, 227, 3)
    scores = forward(net, rng.standard_normal((1, 3, 227, 227)).astype(np.float32) * 50)
    assert scores.shape == (1, 1000)
    assert np.isclose(scores.sum(), 1, atol=1e-4)  # ends in its softmax
    fc6 = net.node("fc6").layer.W
    # fc6 reads pool5 (256, 6, 6): lrpnb's row (h, w, c) is Caffe's column c*36 + h*6 + w
    assert np.array_equal(fc6[(2 * 6 + 3) * 256 + 7], weights["fc6"][0][:, 7 * 36 + 2 * 6 + 3])


# ---------------------------------------------------------------- errors
def small(tmp_path, weights=None, text=None):
    text = text or header((1, 1, 4, 4)) + layer(
        "conv", "Convolution", "data", "conv", "convolution_param { num_output: 2 kernel_size: 2 }") + layer(
        "fc", "InnerProduct", "conv", "fc", "inner_product_param { num_output: 3 }")
    weights = weights if weights is not None else {"conv": [randn(2, 1, 2, 2), randn(2)],
                                                   "fc": [randn(3, 18), randn(3)]}
    return model(tmp_path, text, weights)


def test_small_model_loads(tmp_path):
    proto, path = small(tmp_path)
    assert forward(lrpnb.load(proto, weights=path), randn(1, 1, 4, 4)).shape == (1, 3)


@pytest.mark.parametrize("weights,message", [
    ({"conv": [randn(2, 1, 2, 2), randn(2)]}, r"net\.caffemodel: layer 'fc' \(InnerProduct\): no weights"),
    ({"conv": [randn(2, 1, 2, 2)], "fc": [randn(3, 18), randn(3)]}, r"layer 'conv' .*holds 1 blobs, expected 2"),
    ({"conv": [randn(2, 1, 3, 3), randn(2)], "fc": [randn(3, 18), randn(3)]}, r"layer 'conv' .*blob 0 has shape"),
    ({"conv": [randn(2, 1, 2, 2), randn(2), randn(2)], "fc": [randn(3, 18), randn(3)]}, r"'conv'.*3 blobs"),
])
def test_mismatched_weights_name_file_and_layer(tmp_path, weights, message):
    proto, path = small(tmp_path, weights)
    with pytest.raises(ValueError, match=message):
        lrpnb.load(proto, weights=path)


def test_truncated_and_damaged_caffemodel(tmp_path):
    proto, path = small(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(ValueError, match=r"net\.caffemodel: layer 'fc' \(layer 2\) .*truncated"):
        lrpnb.load(proto, weights=path)
    path.write_bytes(b"\xff" * 20)
    with pytest.raises(ValueError, match=r"net\.caffemodel: .*damaged or truncated"):
        lrpnb.load(proto, weights=path)


def test_damaged_caffemodels_are_value_errors(tmp_path):
    proto, path = small(tmp_path)
    data = path.read_bytes()
    rng = np.random.default_rng(7)
    for trial in range(300):
        damaged = bytearray(data[:rng.integers(0, len(data))] if trial % 2 else data)
        for _ in range(trial % 2 == 0):
            damaged[rng.integers(0, len(damaged))] = rng.integers(0, 256)
        path.write_bytes(bytes(damaged))
        try:
            lrpnb.load(proto, weights=path)
        except ValueError as error:
            assert str(error).startswith(str(tmp_path)), error
    proto, path = small(tmp_path, {"conv": [randn(2, 1, 2, 2), randn(2)],
                                   "fc": [np.full((3, 18), np.nan, np.float32), randn(3)]})
    with pytest.raises(ValueError, match=r"net\.caffemodel: layer 'fc' \(InnerProduct\): .*NaN"):
        lrpnb.load(proto, weights=path)
    proto.write_text("x { " * 5000 + "}" * 5000)
    with pytest.raises(ValueError, match=r"net\.prototxt: fields nested too deeply"):
        lrpnb.load(proto, weights=path)


def test_malformed_prototxt_and_unsupported_layers(tmp_path):
    proto, path = small(tmp_path)
    proto.write_text('input: "data" layer { name: "x" type: ')
    with pytest.raises(ValueError, match=r"net\.prototxt: not a Caffe network definition"):
        lrpnb.load(proto, weights=path)
    proto.write_text(header((1, 1, 4, 4)) + layer("e", "Eltwise", ["data", "data"], "e",
                                                  "eltwise_param { operation: PROD }"))
    with pytest.raises(ValueError, match=r"net\.prototxt: layer 'e' \(Eltwise\): operation PROD"):
        lrpnb.load(proto, weights=path)
    proto.write_text(header((1, 1, 4, 4)) + layer("d", "Deconvolution", "data", "d"))
    with pytest.raises(ValueError, match=r"layer 'd' \(Deconvolution\): lrpnb does not read this layer type"):
        lrpnb.load(proto, weights=path)
    with pytest.raises(ValueError, match=r"\.caffemodel holds a Caffe model's weights"):
        lrpnb.load(path)


def test_info_command_lists_layers(tmp_path):
    proto, path = small(tmp_path)
    result = subprocess.run([sys.executable, "-m", "lrpnb", "info", str(proto), "--weights", str(path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "input: images of 4 x 4 x 1" in lines
    assert [line.split()[1] for line in lines[3:6]] == ["Convolution", "Flatten", "Linear"]
    assert "total parameters: 67" in lines  # 2 * 2 * 2 + 2 and 18 * 3 + 3


def test_explain_and_evaluate_take_weights(tmp_path):
    proto, path = small(tmp_path)
    data = tmp_path / "x.npy"
    np.save(data, randn(3, 4, 4, 1))
    summary = lrpnb.explain_dataset(proto, data, tmp_path / "r.npy", weights=path, rule="epsilon", param=0.01,
                                    verbose=False)
    assert summary.failures == 0
    net = lrpnb.load(proto, weights=path)
    expected = net.explain(np.load(data), rule="epsilon", param=0.01)
    assert np.allclose(np.load(tmp_path / "r.npy"), np.asarray(expected), rtol=1e-5, atol=1e-7)
    # the weights are an input: never overwritten by an output
    weights = tmp_path / "weights.npy"  # a name an output may have
    weights.write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="weights.npy"):
        lrpnb.explain_dataset(proto, data, weights, weights=weights, overwrite=True, verbose=False)
    assert weights.read_bytes() == path.read_bytes()
    result = lrpnb.evaluate_dataset(proto, data, weights=path, rule="epsilon:0.01", region=(2, 2), verbose=False)
    assert set(result.curves) == {"epsilon 0.01", "random"}


# ---------------------------------------------------------------- the Caffe toolbox's batch mode
def write_mean(path, mean_chw):
    blob = PACKED["BlobProto"](num=1, channels=mean_chw.shape[0], height=mean_chw.shape[1], width=mean_chw.shape[2])
    blob.data = np.asarray(mean_chw, "<f4").tobytes()
    path.write_bytes(blob.SerializeToString())
    return path


def test_mean_file_reads_as_hwc(tmp_path):
    mean = randn(3, 5, 4)
    assert np.array_equal(lrpnb.caffe_import.read_mean_file(write_mean(tmp_path / "m.binaryproto", mean)),
                          mean.transpose(1, 2, 0))
    (tmp_path / "bad.binaryproto").write_bytes(b"\x0a\xff")
    with pytest.raises(ValueError, match=r"bad\.binaryproto: not a Caffe mean file"):
        lrpnb.caffe_import.read_mean_file(tmp_path / "bad.binaryproto")


def test_toolbox_image_cut_and_mean(tmp_path):
    from PIL import Image

    from lrpnb.caffe_import.images import toolbox_image

    pixels = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)  # wider than high: columns resized to 10
    Image.fromarray(pixels).save(tmp_path / "i.png")
    mean = RNG.uniform(0, 255, (12, 12, 3)).astype(np.float32)
    X, cut = toolbox_image(tmp_path / "i.png", (8, 8, 3), 10, mean)
    # columns cut from the centre (1..8), the 6 rows widened to 8 by repeating the first and last
    expected = pixels[[0, 0, 1, 2, 3, 4, 5, 5]][:, 1:9].astype(np.float32)
    assert np.array_equal(cut, expected)
    mean_cut = mean[[0, 0, 1, 2, 3, 4, 5, 5]][:, 2:10]
    assert np.allclose(X, expected[..., ::-1] - mean_cut)


def test_toolbox_config_runs_caffenet(tmp_path):
    proto = need_shared(CAFFE / "caffenet_deploy.prototxt")
    config_text = need_shared(CAFFE / "config.txt").read_text()
    images = tmp_path / "someimages"
    images.mkdir()
    for name in ("cat1.jpg", "shark1.jpg"):
        (images / name).write_bytes(need_shared(CAFFE / "images" / name).read_bytes())
    (tmp_path / "deploy.prototxt").write_bytes(proto.read_bytes())
    rng = np.random.default_rng(1)
    write_caffemodel(tmp_path / "net.caffemodel", {
        name: [rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2 / np.prod(shape[1:]))),
               np.zeros(shape[0], np.float32)] for name, shape in CAFFENET.items()})
    write_mean(tmp_path / "mean.binaryproto", rng.uniform(90, 130, (3, 256, 256)).astype(np.float32))
    # the toolbox's own config, its paths pointed at the files here
    lines = config_text.splitlines()
    for key, value in dict(param_file="deploy.prototxt", model_file="net.caffemodel",
                           mean_file="mean.binaryproto", synsetfile="synset_words.txt").items():
        lines[lines.index(key) + 1] = value
    (tmp_path / "config.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "list.txt").write_text("someimages/cat1.jpg -1\nsomeimages/shark1.jpg 3\n")
    done = lrpnb.toolbox_mode.explain_filelist(str(tmp_path / "config.txt"), str(tmp_path / "list.txt"),
                                               str(tmp_path))
    assert done == 2
    out = tmp_path / "lrp_output"
    for name in ("cat1", "shark1"):
        for suffix in ("_rawhm.txt", "_heatmap.png", "_as_inputted_into_the_dnn.png", "_toptenscores.txt"):
            assert (out / (name + suffix)).is_file()
    relevance = lrpnb.toolbox_mode.read_rawhm(out / "shark1_rawhm.txt")
    assert relevance.shape == (227, 227, 3) and np.isfinite(relevance).all() and np.abs(relevance).sum() > 0


def test_explain_command_with_a_mean_file(tmp_path):
    proto = tmp_path / "net.prototxt"
    W, b = randn(2, 3 * 2 * 2), randn(2)
    proto.write_text(header((1, 3, 2, 2)) + layer("ip", "InnerProduct", "data", "ip",
                                                  "inner_product_param { num_output: 2 }"))
    weights = write_caffemodel(tmp_path / "net.caffemodel", {"ip": [W, b]})
    mean = write_mean(tmp_path / "mean.binaryproto", np.stack([np.full((2, 2), v, np.float32) for v in (10, 20, 30)]))
    data = tmp_path / "x.npy"
    X = RNG.uniform(0, 255, (2, 2, 2, 3)).astype(np.float32)  # RGB, (N, H, W, C)
    np.save(data, X)
    out = tmp_path / "r.h5"
    result = subprocess.run([sys.executable, "-m", "lrpnb", "explain", "--model", str(proto), "--weights",
                             str(weights), "--data", str(data), "--out", str(out), "--rule", "epsilon", "--param",
                             "0.01", "--input-range", "0", "255", "--channel-order", "bgr", "--mean", str(mean)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    import h5py

    with h5py.File(out, "r") as handle:
        scores = handle["scores"][:]
    # the model sees BGR less the file's per-channel (B, G, R) means
    x = X[..., ::-1] - np.array([10, 20, 30], np.float32)
    close(scores, inner(x.transpose(0, 3, 1, 2), W, b))


def test_the_mean_file_is_never_an_output(tmp_path, capsys):
    from lrpnb.cli import main

    proto = tmp_path / "net.prototxt"
    proto.write_text(header((1, 3, 2, 2)) + layer("ip", "InnerProduct", "data", "ip",
                                                  "inner_product_param { num_output: 2 }"))
    weights = write_caffemodel(tmp_path / "net.caffemodel", {"ip": [randn(2, 12), randn(2)]})
    mean = write_mean(tmp_path / "mean.binaryproto", np.zeros((3, 2, 2), np.float32))
    before = mean.read_bytes()
    np.save(tmp_path / "x.npy", RNG.uniform(0, 255, (2, 2, 2, 3)).astype(np.float32))
    status = main(["explain", "--model", str(proto), "--weights", str(weights), "--data", str(tmp_path / "x.npy"),
                   "--out", str(mean), "--mean", str(mean), "--overwrite"])
    assert status == 1 and "is an input of this command (--mean)" in capsys.readouterr().err
    assert mean.read_bytes() == before


def test_the_result_records_the_weights_file(tmp_path):
    import hashlib

    proto = tmp_path / "net.prototxt"
    proto.write_text(header((1, 3, 2, 2)) + layer("ip", "InnerProduct", "data", "ip",
                                                  "inner_product_param { num_output: 2 }"))
    weights = write_caffemodel(tmp_path / "net.caffemodel", {"ip": [randn(2, 12), randn(2)]})
    np.save(tmp_path / "x.npy", RNG.uniform(0, 255, (2, 2, 2, 3)).astype(np.float32))
    lrpnb.explain_dataset(proto, tmp_path / "x.npy", tmp_path / "r.h5", weights=weights, verbose=False)
    made = lrpnb.provenance.read(tmp_path / "r.h5")
    assert made["weights"] == str(weights)
    assert made["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert made["model_sha256"] == hashlib.sha256(proto.read_bytes()).hexdigest()


def test_toolbox_caffe_keys_need_param_file(tmp_path):
    config = tmp_path / "config.txt"
    config.write_text("model_file\nm.txt\nrelpropformulatype\n2\nstandalone_outpath\nout\n\nbaseimgsize\n256\n")
    with pytest.raises(ValueError, match=r"config\.txt:8: unknown key 'baseimgsize'.*with param_file"):
        lrpnb.toolbox_mode.read_config(str(config))
    config.write_text("param_file\nd.prototxt\nmodel_file\nm.caffemodel\nrelpropformulatype\n2\nstandalone_outpath\n"
                      "out\nlastlayerindex\n-2\n\n-1 finds the lowest softmax\n-2 the highest innerproduct\n\n"
                      "use_mean_file_asbinaryprotoblob\n3\n")
    with pytest.raises(ValueError, match=r"config\.txt:16: use_mean_file_asbinaryprotoblob 3 is not read"):
        lrpnb.toolbox_mode.read_config(str(config))


def test_convert_to_lrpnb(tmp_path):
    proto, path = small(tmp_path)
    out = tmp_path / "net.lrpnb"
    result = subprocess.run([sys.executable, "-m", "lrpnb", "convert", str(proto), str(out), "--weights", str(path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    x = randn(2, 1, 4, 4)
    assert np.array_equal(forward(lrpnb.load(out), x), forward(lrpnb.load(proto, weights=path), x))
    # a chain of the toolbox's layers (no padding) goes into the toolbox's text format too
    lrpnb.save(lrpnb.load(proto, weights=path), tmp_path / "net.txt")
    assert np.allclose(forward(lrpnb.load(tmp_path / "net.txt"), x), forward(lrpnb.load(out), x), rtol=1e-6)

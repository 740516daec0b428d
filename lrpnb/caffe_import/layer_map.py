"""Caffe's layers as lrpnb's: one handler ``layer_<Type>`` per Caffe layer
type. Weights change layout once, here: filters (n, d/g, h, w) become
(h, w, d/g, n); an InnerProduct's (n, d) becomes (d, n), its rows put in
lrpnb's (H, W, C) order where it reads a flattened image (Caffe flattens
(C, H, W)); a BatchNorm and a Scale fold into the convolution or
InnerProduct before them where nothing else reads its output."""
import numpy as np

from ..data_io import check_array_size
from ..layers.elementwise import LeakyReLU
from ..layers.pool import pooled_size
from ..network import (LRN, Add, AveragePool, BatchNorm, Concat, Convolution, Flatten, GlobalAveragePool, Linear,
                       MaxPool, Rect, Sigmoid, SoftMax, Tanh)

__all__ = ["LayerMap"]


def _pair(param, name, default, repeated=True, prefix=None):
    """(rows, columns) of a window setting: ``prefix_h``/``prefix_w``, else ``name`` (one value or two)."""
    if prefix and (param.HasField(f"{prefix}_h") or param.HasField(f"{prefix}_w")):
        return getattr(param, f"{prefix}_h"), getattr(param, f"{prefix}_w")
    values = list(getattr(param, name)) if repeated else ([getattr(param, name)] if param.HasField(name) else [])
    if len(values) > 2:
        raise ValueError(f"{name}: {len(values)} values; lrpnb reads 2-d layers (one value or two)")
    if not values:
        if default is None:
            raise ValueError(f"needs {name} (or {name}_h and {name}_w)")
        values = [default]
    return (values[0], values[-1])


def _transposed(W):
    """W.T as a C-contiguous copy, in blocks of rows (numpy's one-pass transposed copy of a large matrix
    misses the cache at every element)."""
    out = np.empty(W.shape[::-1], W.dtype)
    for start in range(0, W.shape[0], 64):
        out[:, start:start + 64] = W[start:start + 64].T
    return out


class LayerMap:
    SUPPORTED = ("Convolution", "Pooling", "InnerProduct", "ReLU", "Sigmoid", "TanH", "LRN", "Concat", "Eltwise",
                 "BatchNorm", "Scale", "Dropout", "Softmax", "Flatten", "Split")

    def make(self, layer, kind, *arguments):
        """An lrpnb layer; its refusal of the arguments (weights with NaN, ...) names the Caffe layer."""
        try:
            return kind(*arguments)
        except ValueError as error:
            raise self.error(layer, str(error), weights=True) from None

    def image(self, layer):
        (blob,) = self.bottoms(layer)
        if not blob.is_image:
            raise self.error(layer, f"expects an image (N, C, H, W), got (N, {', '.join(map(str, blob.shape))})")
        return blob

    def layer_Convolution(self, layer):
        param, source = layer.convolution_param, self.image(layer)
        try:
            kernel = _pair(param, "kernel_size", None, prefix="kernel")
            pad, stride = _pair(param, "pad", 0, prefix="pad"), _pair(param, "stride", 1, prefix="stride")
            dilation = _pair(param, "dilation", 1)
        except ValueError as error:
            raise self.error(layer, str(error)) from None
        n, groups, channels = param.num_output, param.group, source.shape[0]
        if param.axis != 1 or not n or not groups or channels % groups or n % groups:
            raise self.error(layer, f"needs num_output > 0, axis 1 and a group dividing the {channels} input "
                                    f"channels and the {n} outputs")
        (h, w), (rows, columns) = kernel, dilation
        check_array_size(((h - 1) * rows + 1) * ((w - 1) * columns + 1) * channels * n * 8, self.path,
                         f"layer {layer.name!r}: the dilated filters")
        expected = [(n, channels // groups, h, w)] + [(n,)] * param.bias_term
        blobs = self.params(layer, expected)
        B = blobs[1] if param.bias_term else np.zeros(n, np.float32)
        try:
            conv = Convolution(blobs[0].transpose(2, 3, 1, 0), B, stride=stride, padding=(pad[0], pad[0], pad[1],
                               pad[1]), dilation=dilation, groups=groups)
            _, rows, columns, _ = conv.output_shape((1,) + source.lshape)
        except ValueError as error:
            raise self.error(layer, str(error)) from None
        self.tops(layer, self.add(layer, conv, [source], (n, rows, columns), folds=True))

    def layer_Pooling(self, layer):
        param, source = layer.pooling_param, self.image(layer)
        C, H, W = source.shape
        if param.pool not in (0, 1):
            raise self.error(layer, "only MAX and AVE pooling are read (STOCHASTIC is a training method)")
        if param.global_pooling:
            if param.pad or param.pad_h or param.pad_w:
                raise self.error(layer, "global pooling takes no padding")
            pool = GlobalAveragePool() if param.pool == 1 else MaxPool((H, W), (1, 1))
            self.tops(layer, self.add(layer, pool, [source], (C, 1, 1)))
            return
        try:
            kernel = _pair(param, "kernel_size", None, False, "kernel")
            pad, stride = _pair(param, "pad", 0, False, "pad"), _pair(param, "stride", 1, False, "stride")
        except ValueError as error:
            raise self.error(layer, str(error)) from None
        ceil = param.round_mode == 0
        sizes = []
        for size, k, s, p in zip((H, W), kernel, stride, pad):
            if not k or not s:
                raise self.error(layer, f"kernel {kernel} and stride {stride} must be positive")
            caffe = -(-(size + 2 * p - k) // s) + 1 if ceil else (size + 2 * p - k) // s + 1
            if ceil and p and (caffe - 1) * s >= size + p:
                caffe -= 1
            # without padding Caffe keeps a last window that starts past the image (stride > kernel)
            if caffe != pooled_size(size, k, s, p, p, ceil):
                raise self.error(layer, f"Caffe's last window (kernel {k}, stride {s}, no padding) lies wholly "
                                        f"outside the image of size {size}; lrpnb pools hold no empty windows")
            sizes.append(caffe)
        padding = (pad[0], pad[0], pad[1], pad[1])
        try:
            pool = MaxPool(kernel, stride, padding, ceil_mode=ceil) if param.pool == 0 else \
                AveragePool(kernel, stride, padding, count_include_pad=True, ceil_mode=ceil)
        except ValueError as error:
            raise self.error(layer, str(error)) from None
        if min(sizes) < 1:
            raise self.error(layer, f"the window {kernel} does not fit the image ({H}, {W})")
        self.tops(layer, self.add(layer, pool, [source], (C, *sizes)))

    def layer_InnerProduct(self, layer):
        param, (source,) = layer.inner_product_param, self.bottoms(layer)
        n, d = param.num_output, int(np.prod(source.shape))
        if param.axis != 1 or not n:
            raise self.error(layer, "needs num_output > 0 and axis 1 (the features of each sample)")
        expected = [(d, n) if param.transpose else (n, d)] + [(n,)] * param.bias_term
        blobs = self.params(layer, expected)
        W = blobs[0] if param.transpose else _transposed(blobs[0])
        B = blobs[1] if param.bias_term else np.zeros(n, np.float32)
        image = source.shape if source.is_image else source.flattened
        if source.is_image:
            source = self.add(layer, Flatten(), [source], (d,), image, suffix="/flatten")
        if image is not None:
            # Caffe's column c*H*W + h*W + w is lrpnb's row (h*W + w)*C + c
            C, H, Wd = image
            W = W.reshape(C, H * Wd, n).transpose(1, 0, 2).reshape(d, n)
        self.tops(layer, self.add(layer, self.make(layer, Linear, W, B), [source], (n,), folds=True))

    def pointwise(self, layer, made):
        (source,) = self.bottoms(layer)
        self.no_params(layer)
        out = self.add(layer, made, [source], source.shape, source.flattened)
        self.tops(layer, out)

    def layer_ReLU(self, layer):
        slope = layer.relu_param.negative_slope
        self.pointwise(layer, Rect() if slope == 0 else self.make(layer, LeakyReLU, slope))

    def layer_Sigmoid(self, layer):
        self.pointwise(layer, Sigmoid())

    def layer_TanH(self, layer):
        self.pointwise(layer, Tanh())

    def layer_LRN(self, layer):
        param = layer.lrn_param
        if param.norm_region != 0:
            raise self.error(layer, "only ACROSS_CHANNELS LRN is read (WITHIN_CHANNEL is not supported)")
        self.image(layer)
        if param.local_size % 2 == 0:
            raise self.error(layer, f"local_size {param.local_size}: Caffe's LRN takes odd sizes only")
        try:
            made = LRN(param.local_size, param.alpha, param.beta, param.k)
        except ValueError as error:
            raise self.error(layer, str(error)) from None
        self.pointwise(layer, made)

    def alias(self, layer, count=1):
        (source,) = self.bottoms(layer)
        self.no_params(layer)
        self.tops(layer, _copy(source), count)

    def layer_Dropout(self, layer):
        self.alias(layer)

    def layer_Split(self, layer):
        self.alias(layer, None)

    def layer_Softmax(self, layer):
        (source,) = self.bottoms(layer)
        if layer.softmax_param.axis not in (1, -1) or len(source.shape) != 1 or source.flattened is not None:
            raise self.error(layer, "only a softmax over the classes of (N, C) scores is read")
        self.pointwise(layer, SoftMax())

    def layer_Flatten(self, layer):
        (source,) = self.bottoms(layer)
        rank = len(source.shape) + 1
        # V1 layers have no flatten_param: they flatten all axes but the batch
        param = layer.flatten_param if "flatten_param" in layer.DESCRIPTOR.fields_by_name else None
        if param is not None and (param.axis % rank != 1 or param.end_axis % rank != rank - 1):
            raise self.error(layer, "only a flattening of all axes but the batch (axis 1, end_axis -1) is read")
        self.no_params(layer)
        if not source.is_image:
            return self.tops(layer, _copy(source))
        self.tops(layer, self.add(layer, Flatten(), [source], (int(np.prod(source.shape)),), source.shape))

    def layer_Concat(self, layer):
        sources = self.bottoms(layer, None)
        param = layer.concat_param
        axis = param.axis if param.HasField("axis") or not param.HasField("concat_dim") else param.concat_dim
        rank = len(sources[0].shape) + 1
        if axis % rank != 1 or any(s.flattened is not None or len(s.shape) + 1 != rank for s in sources):
            raise self.error(layer, "only a concatenation of channels (axis 1) of images, or of features, is read")
        self.no_params(layer)
        if len(sources) == 1:
            return self.tops(layer, _copy(sources[0]))
        shape = (sum(s.shape[0] for s in sources),) + sources[0].shape[1:]
        self.tops(layer, self.add(layer, Concat(), sources, shape))

    def layer_Eltwise(self, layer):
        sources = self.bottoms(layer, None)
        param = layer.eltwise_param
        if param.operation != 1:
            raise self.error(layer, f"operation {('PROD', 'SUM', 'MAX')[param.operation]} is not supported; lrpnb "
                                    f"reads Eltwise SUM")
        if any(c != 1 for c in param.coeff):
            raise self.error(layer, f"coefficients {list(param.coeff)}: only a plain sum (coefficients 1) is read")
        if any(s.flattened is not None for s in sources):
            raise self.error(layer, "sums of flattened images are not supported")
        self.no_params(layer)
        if len(sources) == 1:
            return self.tops(layer, _copy(sources[0]))
        self.tops(layer, self.add(layer, Add(), sources, sources[0].shape))

    def layer_BatchNorm(self, layer):
        (source,) = self.bottoms(layer)
        param, C = layer.batch_norm_param, source.shape[0]
        if param.HasField("use_global_stats") and not param.use_global_stats:
            raise self.error(layer, "use_global_stats: false normalises by each batch's own statistics; lrpnb "
                                    "reads the stored ones (set it true, or remove it as deploy files do)")
        mean, var, factor = self.params(layer, [(C,), (C,), (1,)])
        # Caffe stores moving sums: the mean and variance are the blobs divided by the scale factor
        scale = 0.0 if factor[0] == 0 else 1.0 / float(factor[0])
        self.affine(layer, source, mean.astype(np.float64) * scale, var.astype(np.float64) * scale, param.eps,
                    np.ones(C), np.zeros(C))

    def layer_Scale(self, layer):
        (source,) = self.bottoms(layer)
        param, C = layer.scale_param, source.shape[0]
        if param.axis != 1 or param.num_axes != 1:
            raise self.error(layer, "only a per-channel scale (axis 1, num_axes 1) is read")
        blobs = self.params(layer, [(C,)] + [(C,)] * param.bias_term)
        beta = blobs[1] if param.bias_term else np.zeros(C)
        self.affine(layer, source, np.zeros(C), np.ones(C), 0.0, blobs[0].astype(np.float64), beta)

    def affine(self, layer, source, mean, var, eps, gamma, beta):
        """y = (x - mean) gamma / sqrt(var + eps) + beta per channel: folded into the layer before where it
        may take it, else a BatchNorm."""
        if source.flattened is not None:
            raise self.error(layer, "a per-channel normalisation of a flattened image is not supported")
        try:
            norm = BatchNorm(gamma, beta, mean, var, eps)
        except ValueError as error:
            raise self.error(layer, str(error), weights=True) from None
        node = self.by_name.get(source.value)
        if node is not None and self.read_once(layer, source):
            made = node.layer
            if isinstance(made, BatchNorm):
                made.scale, made.shift = made.scale * norm.scale, made.shift * norm.scale + norm.shift
            else:
                dtype = made.W.dtype
                made.W = (made.W * norm.scale).astype(dtype)
                made.B = (made.B * norm.scale + norm.shift).astype(dtype)
            return self.tops(layer, source)
        self.tops(layer, self.add(layer, norm, [source], source.shape, folds=True))


def _copy(blob):
    """The same values under another name: nothing may fold into the node that computes them."""
    out = type(blob)(blob.value, blob.shape, blob.flattened)
    return out

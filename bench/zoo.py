"""The model zoo: torchvision's classification networks in lrpnb, against torch and zennit.

Every architecture of ``torchvision.models`` (one per family by default,
``--all`` for every one) is built with seeded random weights and random
BatchNorm statistics and affine parameters (running mean ~ N(0, 0.1),
running variance ~ U(0.5, 1.5), weight ~ U(0.5, 1.5), bias ~ N(0, 0.1), so
that folding them at load is tested), put in eval mode and exported with
``torch.onnx.export(..., dynamo=False, opset_version=17)`` (batch axis
dynamic; BatchNormalization nodes kept, not fused by the exporter) into a
cache folder, with a fixed input and torch's float32 scores beside it
(``NAME.npz``: ``x`` in NCHW, ``scores``). Nothing is downloaded.

Then, for each model:

- load it with ``lrpnb.load`` (or report the first error line: the operator
  lrpnb refuses);
- compare lrpnb's float32 scores with torch's (max relative error);
- explain with lrpnb's ``EpsilonPlusFlat`` and zennit's ``EpsilonPlusFlat``
  with its canonizers (``ResNetCanonizer`` for ResNet, ResNeXt and Wide
  ResNet, ``VGGCanonizer`` for VGG), both in float64, from the score of
  the predicted class: max relative error and correlation of the maps.
  The BatchNorms that zennit's SequentialMergeBatchNorm merges are folded
  beforehand as lrpnb folds them at load (float64, rounded once to
  float32), so that both sides hold the same weights and the comparison
  shows the formulas alone;
- time both explanations at ``--batch`` (8) images of 224×224 (299×299 for
  Inception-v3), float32, on the CPU, side by side in one process: the two
  take turns for ``--rounds`` rounds after a warm-up, each figure the best
  of its rounds.

It prints a markdown table, then the ONNX operators of each graph that lie
outside lrpnb's operator table (``lrpnb.onnx_import.SUPPORTED_OPS``).

With ``--zennit-sees-functions`` it also explains with zennit on the model
rewritten by :func:`modules_for_functions` (torch.fx): torchvision's
functional ReLUs, average pools, spatial means and residual sums, which
zennit's module hooks cannot see and lrpnb sees as ONNX nodes, become the
modules zennit gives its Pass and Norm rules. A second table shows the
maps against zennit's before and after; ``--zennit-even-ties`` adds a
column with zennit's max pooling modules also splitting a window's
relevance evenly among tied maxima, as lrpnb's rule does (:func:`even_ties`).

Usage (from the repository root, in an environment with torch, torchvision,
zennit and onnx: ``pip install torch==2.14.1 torchvision==0.29.1 zennit onnx``
and ``pip install -e .``):

    python bench/zoo.py [--all | --models resnet18,vgg11] [--cache DIR] [--batch 8]
        [--rounds 2] [--seed 0] [--export-only] [--no-timing] [--loads]
        [--zennit-sees-functions [--zennit-even-ties]]

``--loads`` prints only a markdown sentence naming the models that lrpnb
loads and that give torch's scores (for the README); ``--export-only``
writes the cache and its README.txt and stops.
"""
import argparse
import collections
import datetime
import gc
import importlib
import importlib.metadata
import os
import pathlib
import platform
import re
import subprocess
import sys
import time
import warnings

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import lrpnb  # noqa: E402
from peers import import_zennit  # noqa: E402

#: one architecture per family: the default set
REPRESENTATIVES = (
    "alexnet", "convnext_tiny", "densenet121", "efficientnet_b0", "efficientnet_v2_s", "googlenet",
    "inception_v3", "maxvit_t", "mnasnet0_5", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
    "regnet_x_400mf", "regnet_y_400mf", "resnet18", "resnet50", "resnext50_32x4d", "shufflenet_v2_x0_5",
    "squeezenet1_0", "squeezenet1_1", "swin_t", "swin_v2_t", "vgg11", "vgg11_bn", "vit_b_16", "vit_b_32",
    "wide_resnet50_2")
#: input side per model; every other model takes 224
SIZES = {"inception_v3": 299}
CACHE = pathlib.Path("/work/zoo-models")


def build(name, seed):
    """torchvision's ``name`` with seeded random weights and random BatchNorm
    statistics and affine parameters, in eval mode."""
    import torch
    import torchvision
    from torch import nn

    torch.manual_seed(seed)
    options = {"init_weights": True} if name in ("googlenet", "inception_v3") else {}
    model = torchvision.models.get_model(name, weights=None, **options)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                if module.affine:
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.normal_(0, 0.1)
    return model.eval()


def fixed_input(name, batch, seed):
    size = SIZES.get(name, 224)
    return np.random.default_rng(seed).normal(size=(batch, 3, size, size)).astype(np.float32)


def export(name, args):
    """Write ``NAME.onnx`` and ``NAME.npz`` into the cache unless both are
    there; answer the paths."""
    import torch

    onnx_path, data_path = args.cache / f"{name}.onnx", args.cache / f"{name}.npz"
    if onnx_path.exists() and data_path.exists():
        return onnx_path, data_path
    model = build(name, args.seed)
    x = fixed_input(name, args.batch, args.seed)
    start = time.perf_counter()
    # no torch.no_grad() around the export: under it MultiheadAttention takes its fused path
    # (aten::_native_multi_head_attention), which the exporter cannot write
    with torch.no_grad():
        scores = model(torch.from_numpy(x)).numpy()
    with warnings.catch_warnings():
        # the legacy exporter's deprecation, its advice for models in training mode (ours is in eval)
        # and the tracer's note on shape asserts (ViT's), which hold for every input of this size
        warnings.simplefilter("ignore")
        partial = onnx_path.with_suffix(".onnx.part")
        # PRESERVE on a model in eval mode exports eval mode without the exporter's own fusing of
        # BatchNorm into the convolution before it (EVAL fuses): lrpnb's folding is what is tested
        try:
            torch.onnx.export(model, (torch.from_numpy(x),), str(partial), dynamo=False, opset_version=17,
                              training=torch.onnx.TrainingMode.PRESERVE, input_names=["x"],
                              output_names=["scores"], dynamic_axes={"x": {0: "N"}, "scores": {0: "N"}})
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    np.savez(data_path, x=x, scores=scores)
    partial.replace(onnx_path)
    print(f"exported {name} ({onnx_path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - start:.0f} s",
          file=sys.stderr, flush=True)
    del model
    gc.collect()
    return onnx_path, data_path


def outside_table(onnx_path):
    """The graph's operators outside lrpnb's operator table, with the number
    of nodes of each (subgraphs included), most frequent first."""
    import onnx

    from lrpnb import onnx_import

    # the table moves as operators are added; where it lives is the importer's affair
    SUPPORTED_OPS = getattr(onnx_import, "SUPPORTED_OPS", None) or importlib.import_module(
        "lrpnb.onnx_import.checks").SUPPORTED_OPS
    counts = collections.Counter()

    def walk(graph):
        for node in graph.node:
            if node.op_type not in SUPPORTED_OPS:
                counts[node.op_type] += 1
            for attribute in node.attribute:
                for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                    walk(sub)

    walk(onnx.load(str(onnx_path), load_external_data=False).graph)
    return counts.most_common()


def refusal(error, path):
    """The first line of lrpnb's error, without the file's path and the list
    of supported operators: 'Op: what is wrong (node name)'."""
    line = str(error).splitlines()[0].removeprefix(f"{path}: ")
    line = re.sub(r"; lrpnb imports [^;]*", "", line)
    match = re.match(r"node '(.*?)' \((\w+)\): (.*)", line)
    if match:
        line = f"{match[2]}: {match[3]} ({match[1]})"
    return line if len(line) <= 160 else line[:157] + "..."


def canonizers(name):
    """zennit's canonizers for torchvision's ``name``, after :func:`for_zennit`
    has merged the BatchNorms: its ResNet and VGG canonizers; for the other
    models SequentialMergeBatchNorm would find nothing left to merge where
    it is right, and fail where it is not (DenseNet), so none."""
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    if name.startswith(("resnet", "resnext", "wide_resnet")):
        return [ResNetCanonizer()]
    if name.startswith("vgg"):
        return [VGGCanonizer()]
    return []


def for_zennit(model):
    """Prepare ``model`` for zennit: no in-place activations (zennit's
    hooks need the outputs intact), and each BatchNorm that follows a
    convolution or dense layer (zennit's SequentialMergeBatchNorm's choice)
    folded into it as lrpnb folds it at load: in float64, rounded once to
    the weights' float32. Both sides then hold the same weights, and a
    float64 comparison shows the formulas alone. A pair whose channel
    counts differ is left alone: DenseNet's BatchNorm of a concatenation
    follows the last convolution among the modules, not in the graph
    (SequentialMergeBatchNorm fails there). zennit's ResNet and VGG
    canonizers, run again at each explanation, find identity BatchNorms
    (eps 0) to merge and change nothing."""
    import torch
    from torch import nn
    from zennit.core import collect_leaves

    previous = None
    with torch.no_grad():
        for leaf in collect_leaves(model):
            if getattr(leaf, "inplace", False):
                leaf.inplace = False
            if (isinstance(leaf, nn.modules.batchnorm._BatchNorm) and isinstance(previous, (nn.Conv2d, nn.Linear))
                    and len(previous.weight) == leaf.num_features):
                scale = leaf.weight.double() / torch.sqrt(leaf.running_var.double() + leaf.eps)
                shift = leaf.bias.double() - leaf.running_mean.double() * scale
                bias = previous.bias.double() if previous.bias is not None else torch.zeros_like(scale)
                shape = (-1,) + (1,) * (previous.weight.ndim - 1)
                previous.weight.copy_((previous.weight.double() * scale.reshape(shape)).float())
                previous.bias = nn.Parameter((bias * scale + shift).float())
                leaf.weight.fill_(1), leaf.bias.zero_(), leaf.running_mean.zero_(), leaf.running_var.fill_(1)
                leaf.eps = 0.0
            previous = leaf
    return model



def modules_for_functions(model, example):
    """``model`` traced with torch.fx, each functional call that zennit's
    module hooks cannot see made a module they can: ``F.relu`` an
    ``nn.ReLU``, ``F.avg_pool2d`` an ``nn.AvgPool2d``,
    ``F.adaptive_avg_pool2d`` an ``nn.AdaptiveAvgPool2d``, a mean over the
    spatial axes of an NCHW tensor (``x.mean([2, 3])``, ``torch.mean``) an
    ``nn.AdaptiveAvgPool2d(1)`` (flattened where the mean dropped the axes),
    and the sum of two tensors of one shape (a residual ``a + b``) zennit's
    ``Sum`` of their stack, as its ResNet canonizer does. zennit then gives
    them its Pass, Norm and Norm rules, as lrpnb gives the ONNX nodes.

    ``example`` (an input batch) tells tensors from the sizes the traced
    code computes with. Answers the rewritten model (a ``GraphModule``)
    and the number of calls made modules, by function.
    """
    import torch
    from torch import fx
    from torch.fx.passes.shape_prop import ShapeProp
    from zennit.layer import Sum

    module = fx.symbolic_trace(model)
    ShapeProp(module).propagate(example)
    counts = collections.Counter()
    for node in list(module.graph.nodes):
        made = seen_module(node)
        if made is None:
            continue
        replacement, inputs, flatten = made
        name = f"zennit_sees_{len(list(module.named_children()))}"
        module.add_submodule(name, replacement)
        with module.graph.inserting_after(node):
            if isinstance(replacement, Sum):
                stack = module.graph.call_function(torch.stack, (list(inputs), -1))
                with module.graph.inserting_after(stack):
                    new = module.graph.call_module(name, (stack,))
            else:
                new = module.graph.call_module(name, (inputs[0],))
            last = new
            if flatten:
                with module.graph.inserting_after(new):
                    last = module.graph.call_function(torch.flatten, (new, 1))
        last.meta.update(node.meta)  # a later sum of this output is a sum of tensors too
        node.replace_all_uses_with(last)
        module.graph.erase_node(node)
        counts[type(replacement).__name__] += 1
    module.graph.lint()
    module.recompile()
    return module, counts


def seen_module(node):
    """The module that computes what ``node`` (of a graph that torch.fx's
    ShapeProp has run through) computes, its tensor inputs and whether its
    output is to be flattened; None for any other node."""
    import operator

    import torch
    import torch.nn.functional as F
    from torch import nn
    from zennit.layer import Sum

    def tensor(arg):
        return isinstance(arg, torch.fx.Node) and "tensor_meta" in arg.meta

    args, kwargs = node.args, dict(node.kwargs)
    if node.op == "call_function" and node.target is F.relu:
        return nn.ReLU(), args[:1], False
    if node.op == "call_function" and node.target is F.avg_pool2d:
        return nn.AvgPool2d(*args[1:], **kwargs), args[:1], False
    if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
        return nn.AdaptiveAvgPool2d(*args[1:], **kwargs), args[:1], False
    if (node.op == "call_function" and node.target in (operator.add, operator.iadd, torch.add) and len(args) == 2
            and not kwargs and all(tensor(arg) for arg in args)
            and args[0].meta["tensor_meta"].shape == args[1].meta["tensor_meta"].shape):
        return Sum(), args, False
    is_mean = (node.op == "call_method" and node.target == "mean") or (
        node.op == "call_function" and node.target is torch.mean)
    if is_mean and tensor(args[0]) and len(args[0].meta["tensor_meta"].shape) == 4:
        axes = args[1] if len(args) > 1 else kwargs.get("dim")
        keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        if axes is not None and sorted(a % 4 for a in ([axes] if isinstance(axes, int) else axes)) == [2, 3]:
            return nn.AdaptiveAvgPool2d(1), args[:1], not keep
    return None


def even_ties(module):
    """``module`` (a torch.fx ``GraphModule``) with every ``nn.MaxPool2d``
    (dilation 1, floor mode) made one whose gradient splits each window's
    among its tied maxima, as lrpnb's max-pooling rule does, instead of
    handing it to the first (autograd's choice, hence zennit's, which gives
    max pooling no rule of its own). Answers the number of pools replaced."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class EvenTies(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, kernel, stride, padding):
            ctx.save_for_backward(x)
            ctx.window = kernel, stride, padding
            return F.max_pool2d(x, kernel, stride, padding)

        @staticmethod
        def backward(ctx, grad):
            x, = ctx.saved_tensors
            (kh, kw), stride, (ph, pw) = ctx.window
            n, c, h, w = x.shape
            windows = F.unfold(F.pad(x, (pw, pw, ph, ph), value=-np.inf), (kh, kw), stride=stride)
            windows = windows.view(n, c, kh * kw, -1)
            tied = (windows == windows.max(2, keepdim=True).values).to(x.dtype)
            shares = tied / tied.sum(2, keepdim=True) * grad.reshape(n, c, 1, -1)
            spread = F.fold(shares.view(n, c * kh * kw, -1), (h + 2 * ph, w + 2 * pw), (kh, kw), stride=stride)
            return spread[:, :, ph:ph + h, pw:pw + w], None, None, None

    class EvenTiesMaxPool2d(nn.Module):
        def __init__(self, pool):
            super().__init__()
            pair = nn.modules.utils._pair
            self.window = pair(pool.kernel_size), pair(pool.stride or pool.kernel_size), pair(pool.padding)

        def forward(self, x):
            return EvenTies.apply(x, *self.window)

    replaced = 0
    for name, pool in list(module.named_modules()):
        if isinstance(pool, nn.MaxPool2d) and not pool.ceil_mode and pool.dilation in (1, (1, 1)):
            parent, _, leaf = name.rpartition(".")
            setattr(module.get_submodule(parent), leaf, EvenTiesMaxPool2d(pool))
            replaced += 1
    return replaced


def zennit_explainer(model, name, X, canonize=True):
    """A function that explains the torch batch ``X`` (NCHW) with zennit's
    EpsilonPlusFlat from the predicted class and answers the map in NHWC;
    with ``canonize`` False without :func:`canonizers` (a model from
    :func:`modules_for_functions` has its residual sums already)."""
    import torch
    from zennit.composites import EpsilonPlusFlat

    composite = EpsilonPlusFlat(canonizers=canonizers(name) if canonize else [])

    def explain():
        with composite.context(model) as modified:
            x = X.clone().requires_grad_(True)
            out = modified(x)
            start = torch.zeros_like(out)
            rows = torch.arange(len(out))
            best = out.argmax(dim=1)
            start[rows, best] = out[rows, best]
            relevance, = torch.autograd.grad(out, x, grad_outputs=start)
        return relevance.detach().numpy().transpose(0, 2, 3, 1)

    return explain


def relative(ours, theirs):
    return float(np.abs(ours.astype(np.float64) - theirs).max() / np.abs(theirs).max())


def side_by_side(first, second, rounds):
    """Best seconds of each of two functions, taking turns for ``rounds``
    rounds after one warm-up call each (a slow spell falls on both)."""
    first(), second()
    best = [np.inf, np.inf]
    for _ in range(rounds):
        for k, function in enumerate((first, second)):
            start = time.perf_counter()
            function()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def check(name, onnx_path, data_path, args):
    """One row of the table: loads, scores against torch, map against
    zennit, images/s of both (or the first refusal)."""
    import torch

    row = {"model": name, "outside": outside_table(onnx_path)}
    try:
        net = lrpnb.load(onnx_path)
    except Exception as error:  # noqa: BLE001 - every refusal is reported, whatever its type
        row["refusal"] = refusal(error, onnx_path)
        return row
    row["loads"] = True
    data = np.load(data_path)
    x, torch_scores = data["x"], data["scores"]
    X = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    try:
        row["scores"] = relative(np.asarray(net.scores(X)), torch_scores)
        if args.loads:
            return row
        model = for_zennit(build(name, args.seed))
        with torch.no_grad():
            stale = relative(model(torch.from_numpy(x)).numpy(), torch_scores)
        if stale > 1e-4:
            print(f"{name}: the cached scores differ from this torch's by {stale:.1e}; delete "
                  f"{data_path} and {onnx_path} to export again", file=sys.stderr)
        few = x[:args.check_batch].astype(np.float64)
        theirs = zennit_explainer(model.double(), name, torch.from_numpy(few))()
        ours = np.asarray(net.explain(np.ascontiguousarray(few.transpose(0, 2, 3, 1)),
                                      composite=lrpnb.EpsilonPlusFlat()))
        row["map"] = (relative(ours, theirs), float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]))
        # the sums of the maps, against the explained scores: where one side's map diverges
        explained = np.take_along_axis(torch_scores[:len(few)], torch_scores[:len(few)].argmax(1)[:, None], 1)
        row["sums"] = (ours.sum() / explained.sum(), theirs.sum() / explained.sum())
        if args.zennit_sees_functions:
            seen, row["made"] = modules_for_functions(for_zennit(build(name, args.seed)), torch.from_numpy(x[:1]))
            theirs = zennit_explainer(seen.double(), name, torch.from_numpy(few), canonize=False)()
            row["seen"] = (relative(ours, theirs), float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]),
                           theirs.sum() / explained.sum())
            if args.zennit_even_ties:
                row["made"]["MaxPool2d (ties split)"] = even_ties(seen)
                theirs = zennit_explainer(seen.double(), name, torch.from_numpy(few), canonize=False)()
                row["ties"] = (relative(ours, theirs), float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]))
        if not args.no_timing:
            explain = zennit_explainer(model.float(), name, torch.from_numpy(x))
            composite = lrpnb.EpsilonPlusFlat()
            seconds = side_by_side(lambda: net.explain(X, composite=composite), explain, args.rounds)
            row["lrpnb"], row["zennit"] = (len(x) / s for s in seconds)
    except Exception as error:  # noqa: BLE001 - a model that loads but fails later is a row too
        row["refusal"] = "after loading: " + str(error).splitlines()[0][:160]
    return row


def table(rows):
    lines = ["| model | loads | scores vs torch | map vs zennit (max rel err, corr) | lrpnb img/s "
             "| zennit img/s | ratio | first refusal |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        scores = f"{row['scores']:.1e}" if "scores" in row else ""
        agree = f"{row['map'][0]:.1e}, {row['map'][1]:.6f}" if "map" in row else ""
        speed = [f"{row[side]:.2f}" if side in row else "" for side in ("lrpnb", "zennit")]
        ratio = f"{row['lrpnb'] / row['zennit']:.2f}×" if "zennit" in row else ""
        lines.append(f"| {row['model']} | {'yes' if row.get('loads') else 'no'} | {scores} | {agree} "
                     f"| {speed[0]} | {speed[1]} | {ratio} | {row.get('refusal', '').replace('|', '/')} |")
    return "\n".join(lines)


def seen_table(rows):
    """The maps against zennit's before and after :func:`modules_for_functions`
    (and :func:`even_ties`, where it ran)."""
    ties = any("ties" in row for row in rows)
    lines = ["| model | zennit as is: max rel err, corr | zennit seeing the functions: max rel err, corr "
             + "| and splitting max-pool ties evenly " * ties
             + "| calls made modules | sums (lrpnb / zennit as is / zennit seeing) |",
             "|---|---|---|---|---|" + "---|" * ties]
    for row in rows:
        if "seen" not in row:
            continue
        made = ", ".join(f"{count} {kind}" for kind, count in sorted(row["made"].items()) if count) or "none"
        even = f" {row['ties'][0]:.1e}, {row['ties'][1]:.8f} |" if "ties" in row else " |" * ties
        lines.append(f"| {row['model']} | {row['map'][0]:.1e}, {row['map'][1]:.8f} | {row['seen'][0]:.1e}, "
                     f"{row['seen'][1]:.8f} |{even} {made} | {row['sums'][0]:.4g} / {row['sums'][1]:.4g} / "
                     f"{row['seen'][2]:.4g} |")
    return "\n".join(lines)


def loads_sentence(rows, names_tried):
    """A markdown sentence for the README: the models that load and give
    torch's scores (within 1e-4 relative, float32), and those that do not."""
    import torch
    import torchvision

    good = [row for row in rows if row.get("loads") and row.get("scores", np.inf) <= 1e-4]
    refused = [row["model"] for row in rows if not row.get("loads")]
    off = [row["model"] for row in rows if row.get("loads") and row not in good]
    worst = max((row["scores"] for row in good), default=0.0)
    listed = ", ".join(f"`{row['model']}`" for row in good)
    sentence = (f"Of {len(rows)} `torchvision.models` classification architectures ({names_tried}; random "
                f"weights, exported with opset 17 by `bench/zoo.py`, torch {torch.__version__}, torchvision "
                f"{torchvision.__version__}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}), "
                f"{len(good)} load and give torch's class scores (within {worst:.1e} relative, float32): "
                f"{listed}.")
    if refused:
        sentence += " These do not load yet: " + ", ".join(f"`{name}`" for name in refused) + "."
    if off:
        sentence += " These load but miss torch's scores: " + ", ".join(f"`{name}`" for name in off) + "."
    return sentence


def operators(rows):
    lines = ["| model | operators outside lrpnb's table (nodes) |", "|---|---|"]
    for row in rows:
        text = ", ".join(f"{op} {count}" for op, count in row["outside"]) or "none"
        lines.append(f"| {row['model']} | {text} |")
    totals = collections.Counter(op for row in rows for op, _ in row["outside"])
    lines.append("\nmodels containing each: " + ", ".join(f"{op} {n}" for op, n in totals.most_common()))
    return "\n".join(lines)


def write_readme(cache, args):
    """README.txt of the cache: its files and how they were made."""
    import torch
    import torchvision

    lines = [
        "torchvision classification networks in ONNX, made by bench/zoo.py of the lrpnb repository.",
        "",
        f"Each NAME.onnx is torchvision.models.get_model(NAME, weights=None) built after torch.manual_seed("
        f"{args.seed}), BatchNorm running mean ~ N(0, 0.1), running variance ~ U(0.5, 1.5), weight ~ "
        "U(0.5, 1.5), bias ~ N(0, 0.1), eval mode, exported with torch.onnx.export(model, x, path, "
        "dynamo=False, opset_version=17, training=torch.onnx.TrainingMode.PRESERVE (BatchNormalization "
        "nodes kept, not fused into the convolutions), input_names=['x'], output_names=['scores'], "
        "dynamic_axes={'x': {0: 'N'}, 'scores': {0: 'N'}}).",
        f"Each NAME.npz holds x, the fixed input (float32, NCHW, {args.batch} images ~ N(0, 1) from "
        f"numpy.random.default_rng({args.seed}); 224x224, 299x299 for inception_v3), and scores, torch's "
        "float32 output for x (N, 1000).",
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}. Random weights: test material for "
        "operators and rules, not for accuracy.",
        "Environment: python3 -m venv /work/zoo-venv; /work/zoo-venv/bin/pip install torch==2.14.1 "
        "torchvision==0.29.1 zennit onnx; /work/zoo-venv/bin/pip install -e <the lrpnb checkout>. Remake or "
        "extend (existing files are kept) from the checkout with: /work/zoo-venv/bin/python bench/zoo.py "
        "--export-only [--all | --models NAMES] [--cache DIR]; the comparison table: the same without "
        "--export-only (bench/README.md, 'The model zoo').",
        "",
        "files:"]
    for path in sorted(cache.iterdir()):
        if path.suffix in (".onnx", ".npz"):
            lines.append(f"  {path.name:<34} {path.stat().st_size / 2**20:8.1f} MiB")
    (cache / "README.txt").write_text("\n".join(lines) + "\n")


def header():
    import torch

    where = pathlib.Path(lrpnb.__file__).parent.parent
    commit = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no", "lrpnb"],
                           capture_output=True, text=True).stdout.strip()
    commit = f"{commit}{' with uncommitted changes to lrpnb/' * bool(dirty)}" if commit else "not a git checkout"

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, lrpnb from {where} ({commit}); {cpu}, "
            f"{os.cpu_count()} cores; torch {torch.__version__} ({torch.get_num_threads()} threads), zennit "
            f"{importlib.metadata.version('zennit')}, lrpnb {lrpnb.kernels.workers()} threads")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated torchvision model names (default: one per family)")
    parser.add_argument("--all", action="store_true", help="every classification model of torchvision.models")
    parser.add_argument("--cache", type=pathlib.Path, default=CACHE, help=f"the ONNX files' folder ({CACHE})")
    parser.add_argument("--batch", type=int, default=8, help="images per timed explanation and in x")
    parser.add_argument("--check-batch", type=int, default=2, help="images of the float64 comparison")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export-only", action="store_true")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--loads", action="store_true",
                        help="print only a markdown sentence naming the models that lrpnb loads (for the README)")
    parser.add_argument("--zennit-sees-functions", action="store_true",
                        help="compare the maps also with zennit on the model with its functional ReLUs, "
                             "average pools, spatial means and residual sums made modules (torch.fx)")
    parser.add_argument("--zennit-even-ties", action="store_true",
                        help="with --zennit-sees-functions: once more with zennit's max pooling modules "
                             "splitting ties evenly, as lrpnb's rule does")
    args = parser.parse_args()
    if import_zennit() is None:
        sys.exit("bench/zoo.py needs torch, torchvision, zennit and onnx: pip install torch==2.14.1 "
                 "torchvision==0.29.1 zennit onnx")
    import torchvision

    every = torchvision.models.list_models(module=torchvision.models)
    names = every if args.all else args.models.split(",") if args.models else list(REPRESENTATIVES)
    unknown = sorted(set(names) - set(every))
    if unknown:
        sys.exit(f"bench/zoo.py: not classification models of torchvision.models: {', '.join(unknown)}; "
                 f"known: {', '.join(every)}")
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        try:
            paths = export(name, args)
        except Exception as error:  # noqa: BLE001 - a model torch cannot export is reported, not fatal
            rows.append({"model": name, "outside": [], "refusal": f"export: {str(error).splitlines()[0][:160]}"})
            continue
        if not args.export_only:
            rows.append(check(name, *paths, args))
            print(f"{name}: {rows[-1]}", file=sys.stderr, flush=True)
        gc.collect()
    write_readme(args.cache, args)
    if args.loads:
        tried = "every one" if args.all else "those named" if args.models else "one per family"
        print(loads_sentence(rows, tried))
    elif not args.export_only:
        print(header() + f"; batch {args.batch}, float64 maps on {args.check_batch} images, "
              f"best of {args.rounds} rounds\n")
        print(table(rows) + "\n")
        print(operators(rows))
        if args.zennit_sees_functions:
            print("\n" + seen_table(rows))


if __name__ == "__main__":
    main()

"""Transformers against LXT: small Hugging Face models exported to ONNX,
LXT 2.1's AttnLRP and CP-LRP relevance of them, lrpnb's relevance of the
exported graphs compared with it, and the BERT-base geometry's speed.

Needs the peers extra (torch, transformers 4.52, lxt 2.1, onnx)::

    python bench/transformers.py export  [--out DIR]   # ONNX + inputs + torch outputs (DIR: tf-models)
    python bench/transformers.py lxt     [--out DIR]   # LXT relevance (<model>_lxt.npz)
    python bench/transformers.py compare [--out DIR]   # lrpnb vs LXT, per model and rule
    python bench/transformers.py speed                 # BERT-base geometry, LXT and lrpnb

LXT patches the transformers modules in place (and cannot undo it), so each
rule's LXT explanations run in a child process of their own (``lxt-child``).

Models are built from configs with random weights drawn wider than
transformers' default (initializer_range 0.2, norm weights 1 + N(0, 0.1^2),
biases N(0, 0.1^2), seed fixed): with std 0.02 attention stays uniform and
GELU linear, where a wrong rule barely shows.
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import time
import warnings

# Run as a script, this file's folder comes first on sys.path, where its own
# name would hide the transformers package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import numpy as np  # noqa: E402

MODELS = ("bert", "vit", "gpt2", "llama")
BATCH, SEQ, VOCAB = 2, 8, 1000
# where the exports and references go (``--out``)
OUT = "tf-models"
# the export variants: (file stem, model, whether the graph takes attention_mask)
VARIANTS = (("bert", "bert", True), ("vit", "vit", False), ("gpt2", "gpt2", False),
            ("gpt2_mask", "gpt2", True), ("llama", "llama", False), ("llama_mask", "llama", True))
RULES = ("attnlrp", "cplrp")


def config(name, **geometry):
    """The transformers config of a small model (or the given geometry)."""
    import transformers

    common = dict(initializer_range=0.2, attn_implementation="eager")
    if name == "bert":
        kw = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=128, max_position_embeddings=64, num_labels=3,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        kw.update(geometry)
        return transformers.BertConfig(**kw, **common)
    if name == "vit":
        return transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=128, image_size=32, patch_size=8,
                                      num_channels=3, num_labels=5, hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.0, **common)
    if name == "gpt2":
        return transformers.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4,
                                       n_positions=64, use_cache=False, resid_pdrop=0.0,
                                       embd_pdrop=0.0, attn_pdrop=0.0, **common)
    if name == "llama":
        return transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2,
                                        intermediate_size=128, max_position_embeddings=64,
                                        use_cache=False, **common)
    raise ValueError(f"unknown model {name!r}: one of {MODELS}")


def model_class(name):
    """The transformers class of ``name``, looked up in its modeling module
    at call time (LXT's BERT patch replaces the module's classes)."""
    import importlib

    module, cls = {"bert": ("bert.modeling_bert", "BertForSequenceClassification"),
                   "vit": ("vit.modeling_vit", "ViTForImageClassification"),
                   "gpt2": ("gpt2.modeling_gpt2", "GPT2LMHeadModel"),
                   "llama": ("llama.modeling_llama", "LlamaForCausalLM")}[name]
    return getattr(importlib.import_module("transformers.models." + module), cls)


def build(name, seed=0, state=None, **geometry):
    """The model in eval mode, float32: weights from ``state`` (a state dict)
    or drawn with ``seed``, wider than transformers' default."""
    import torch

    torch.manual_seed(seed)
    model = model_class(name)(config(name, **geometry)).eval()
    if state is not None:
        model.load_state_dict(state)
        return model
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.ndim == 1 and ("norm" in pname.lower() or ".ln_" in pname) and pname.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif p.ndim == 1 and pname.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return model


def inputs(name, mask=True, batch=BATCH, seq=SEQ, seed=1):
    """The numpy inputs of the exported graph: int64 ids (and an int64 mask
    with padding at the end of the last sample), or pixels.

    Padding at the start would leave the padded queries of a language model
    nothing to attend to: a float64 LLaMA, whose softmax runs in float32,
    turns the float64 mask value into -inf there and its logits into NaN.
    """
    rng = np.random.default_rng(seed)
    if name == "vit":
        return {"pixel_values": rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)}
    ids = rng.integers(1, VOCAB, size=(batch, seq)).astype(np.int64)
    out = {"input_ids": ids}
    if mask:
        m = np.ones((batch, seq), np.int64)
        m[-1, seq - 3:] = 0
        out["attention_mask"] = m
    return out


def logits_module(model, names):
    """A module around ``model`` taking the graph inputs ``names`` by
    position and returning the logits tensor alone (what is exported)."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            return self.model(**dict(zip(names, args)), return_dict=True).logits

    return Logits().eval()


def torch_inputs(arrays, dtype):
    """numpy inputs -> torch tensors (pixels in ``dtype``, ids as int64)."""
    import torch

    return {k: torch.tensor(v, dtype=dtype if v.dtype.kind == "f" else torch.int64)
            for k, v in arrays.items()}


def op_histogram(path):
    """{op_type: count} of an ONNX file's graph."""
    import onnx

    return dict(collections.Counter(n.op_type for n in onnx.load(path).graph.node).most_common())


def export_one(stem, name, mask, out, double):
    """Export one variant; returns a README paragraph."""
    import torch

    model = build(name)
    if stem == name:
        torch.save(model.state_dict(), os.path.join(out, f"{name}_state.pt"))
    dtype = torch.float64 if double else torch.float32
    model = model.to(dtype)
    arrays = {k: v.astype(np.float64) if double and v.dtype.kind == "f" else v
              for k, v in inputs(name, mask).items()}
    tensors = torch_inputs(arrays, dtype)
    names = list(arrays)
    wrapped = logits_module(model, names)
    path = os.path.join(out, stem + ("_f64" if double else "") + ".onnx")
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer's warnings about Python conditions on shapes: the shapes are fixed here
        warnings.simplefilter("ignore")
        logits = wrapped(*tensors.values())
        torch.onnx.export(wrapped, tuple(tensors.values()), path, dynamo=False, opset_version=17,
                          input_names=names, output_names=["logits"])
    np.savez(path[:-5] + ".npz", logits=logits.numpy(), **arrays)
    shapes = ", ".join(f"{k} {v.dtype} {v.shape}" for k, v in arrays.items())
    text = (f"{os.path.basename(path)}: {model_class(name).__name__}, {dtype}; inputs: {shapes}; "
            f"output logits {tuple(logits.shape)}\n  ops: {json.dumps(op_histogram(path))}\n")
    if double:
        text += f"  Casts to float32 (of): {json.dumps(float32_casts(path))}\n"
    return text


def float32_casts(path):
    """{Cast node name: its input} of the Casts to float32 in an ONNX file."""
    import onnx

    return {n.name: n.input[0] for n in onnx.load(path).graph.node if n.op_type == "Cast"
            and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)}


def export(out=OUT):
    """Export every variant in float32 and float64 into ``out`` with its
    inputs and torch's logits (.npz beside it) and a README.txt."""
    import torch
    import transformers

    os.makedirs(out, exist_ok=True)
    lines = [f"Made by: python bench/transformers.py export --out {out}\n"
             f"(torch {torch.__version__}, transformers {transformers.__version__}, "
             f"torch.onnx.export(..., dynamo=False, opset_version=17), eager attention, eval mode)\n",
             __doc__.split("\n\n")[-1], "\n",
             "Each X.onnx has X.npz beside it: the graph inputs under their graph names (int64 ids and "
             "mask, float pixels NCHW) and 'logits', torch's output for them. <model>_state.pt: the "
             "float32 weights (torch state dict). Graph output: 'logits' ((N, C) classifiers, (N, T, V) "
             "language models). The mask pads the last 3 tokens of the second sample (padding at the "
             "start would leave padded queries nothing to attend to: NaN in float64 LLaMA, whose softmax "
             "runs in float32). The float64 graphs of ViT, GPT-2 and LLaMA hold Casts to float32 "
             "(listed under each): ViT's and LLaMA's attention softmax, LLaMA's RMSNorm input and rotary "
             "tables run in float32 in torch; GPT-2's is of its mask constant. torch's float64 logits "
             "carry those float32 roundings.\n\n"]
    for double in (False, True):
        for stem, name, mask in VARIANTS:
            try:
                lines.append(export_one(stem, name, mask, out, double))
            except Exception as exc:  # a failed export is reported, the others still made
                lines.append(f"{stem}{'_f64' if double else ''}: export failed: "
                             f"{type(exc).__name__}: {str(exc)[:300]}\n")
            print(lines[-1], end="", flush=True)
    with open(os.path.join(out, "README.txt"), "w") as f:
        f.writelines(lines)



# ---------------------------------------------------------------- LXT side

def _vit_intermediate_forward(self, hidden_states):
    """ViTIntermediate with LXT's identity rule on its GELU."""
    from lxt.efficient.rules import identity_rule_implicit

    return identity_rule_implicit(self.intermediate_act_fn, self.dense(hidden_states))


def _bert_cp_lrp():
    """CP-LRP on LXT's BERT (LXT ships AttnLRP only for BERT): LXT's module
    with its matmul splits removed and query and key held constant, as
    LXT's ``patch_cp_attention`` does for the other models. Returns a
    function that holds a built model's queries and keys constant."""
    import lxt.efficient.models.bert as lxt_bert

    lxt_bert.divide_gradient = lambda tensor, factor=2: tensor

    def hold(model):
        for layer in model.bert.encoder.layer:
            for linear in (layer.attention.self.query, layer.attention.self.key):
                linear.register_forward_hook(lambda module, args, out: out.detach())
    return hold


def lxt_patch(name, rule):
    """Patch transformers' module of ``name`` with LXT for ``rule``
    ('attnlrp' or 'cplrp'); returns a function applied to the built model
    (or None). HF's ViT has no LXT map: it is made of LXT's own patches."""
    from functools import partial

    import torch
    from lxt.efficient import monkey_patch
    from lxt.efficient import patches

    cp = rule == "cplrp"
    if name == "vit":
        from transformers.models.vit import modeling_vit

        patch_map = {modeling_vit.ViTIntermediate: partial(patches.patch_method, _vit_intermediate_forward),
                     torch.nn.LayerNorm: partial(patches.patch_method, patches.layer_norm_forward),
                     torch.nn.Dropout: partial(patches.patch_method, patches.dropout_forward),
                     modeling_vit: patches.patch_cp_attention if cp else patches.patch_attention}
        monkey_patch(modeling_vit, patch_map, verbose=False)
        return None
    if name == "bert":
        from transformers.models.bert import modeling_bert

        monkey_patch(modeling_bert, verbose=False)
        return _bert_cp_lrp() if cp else None
    module = {"gpt2": "lxt.efficient.models.gpt2", "llama": "lxt.efficient.models.llama"}[name]
    import importlib

    maps = importlib.import_module(module)
    target = maps.modeling_gpt2 if name == "gpt2" else maps.modeling_llama
    monkey_patch(target, maps.cp_LRP if cp else maps.attnLRP, verbose=False)
    return None


def lxt_explain(name, rule, arrays, state, double, target=None, **geometry):
    """LXT's relevance in this process (which it patches for good).

    Returns {'relevance': (N, T) token relevance (input embeddings x their
    gradient, summed over the hidden axis) or (N, 3, H, W) pixel relevance,
    'target', 'logit': the explained logits, 'hidden<k>': the relevance at
    hidden_states[k] summed over the hidden axis}. The target defaults to
    the predicted class (classifiers) or the last position's top token
    (language models); the backward pass starts from gradient 1 at the
    target logit, so the relevance sums to about that logit. ``geometry``:
    config fields other than the small model's (as ``build``).
    """
    import torch

    hold = lxt_patch(name, rule)
    dtype = torch.float64 if double else torch.float32
    model = build(name, state=state, **geometry).to(dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    if hold is not None:
        hold(model)
    tensors = torch_inputs(arrays, dtype)
    if name == "vit":
        x = tensors.pop("pixel_values").requires_grad_(True)
        out = model(pixel_values=x, output_hidden_states=True, return_dict=True)
    else:
        x = model.get_input_embeddings()(tensors.pop("input_ids")).detach().requires_grad_(True)
        out = model(inputs_embeds=x, output_hidden_states=True, return_dict=True, **tensors)
    logits = out.logits if out.logits.ndim == 2 else out.logits[:, -1, :]
    if target is None:
        target = logits.argmax(-1).numpy()
    hidden = out.hidden_states
    for h in hidden:
        h.retain_grad()
    chosen = logits[torch.arange(len(target)), torch.as_tensor(target)]
    chosen.sum().backward()
    relevance = x * x.grad
    result = {"relevance": (relevance if name == "vit" else relevance.sum(-1)).detach().numpy(),
              "target": np.asarray(target), "logit": chosen.detach().numpy()}
    for k, h in enumerate(hidden):
        if h.grad is not None:
            result[f"hidden{k}"] = (h * h.grad).sum(-1).detach().numpy()
    return result


def lxt_in_child(stems, rule, models_dir, targets=None):
    """LXT's relevance of the exported variants ``stems`` under ``rule`` in
    a child process (LXT's patches cannot be undone; patches of several
    models in one process agree: they patch LayerNorm and Dropout alike).

    Returns {stem: {'f64': result, 'f32': result}} (``lxt_explain``'s
    dicts). ``targets``: {stem: (N,) ints}; by default the float64 model's
    prediction, used for float32 too.
    """
    import pickle
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        request, out = os.path.join(tmp, "request.pkl"), os.path.join(tmp, "result.pkl")
        with open(request, "wb") as f:
            pickle.dump({"stems": list(stems), "rule": rule, "models_dir": models_dir,
                         "targets": targets or {}}, f)
        run = subprocess.run([sys.executable, os.path.abspath(__file__), "lxt-child", request, out],
                             capture_output=True, text=True)
        if run.returncode:
            raise RuntimeError(f"LXT ({rule}) on {stems} failed:\n{run.stderr[-3000:]}")
        with open(out, "rb") as f:
            return pickle.load(f)


def _variant(stem):
    """(model name, whether it takes a mask) of an export stem."""
    for s, name, mask in VARIANTS:
        if s == stem:
            return name, mask
    raise ValueError(f"unknown variant {stem!r}: one of {[v[0] for v in VARIANTS]}")


def lxt_child(request, out):
    """The ``lxt-child`` command: ``lxt_in_child``'s work, in this process."""
    import pickle

    import torch

    with open(request, "rb") as f:
        job = pickle.load(f)
    results = {}
    for stem in job["stems"]:
        name, _ = _variant(stem)
        state = torch.load(os.path.join(job["models_dir"], f"{name}_state.pt"))
        with np.load(os.path.join(job["models_dir"], stem + ".npz")) as f:
            arrays = {k: f[k] for k in f.files if k != "logits"}
        f64 = lxt_explain(name, job["rule"], arrays, state, True, job["targets"].get(stem))
        f32 = lxt_explain(name, job["rule"], arrays, state, False, f64["target"])
        results[stem] = {"f64": f64, "f32": f32}
    with open(out, "wb") as f:
        pickle.dump(results, f)


def lxt_all(stems, models_dir):
    """{stem: {key: array}} of LXT's relevance under both rules and dtypes:
    '<rule>_<f64|f32>' the relevance, '<rule>_<dtype>_<part>' the other
    parts of ``lxt_explain``'s result, 'target'."""
    first = lxt_in_child(stems, RULES[0], models_dir)
    targets = {stem: first[stem]["f64"]["target"] for stem in stems}
    by_rule = {RULES[0]: first, RULES[1]: lxt_in_child(stems, RULES[1], models_dir, targets)}
    arrays = {stem: {"target": targets[stem]} for stem in stems}
    for rule, results in by_rule.items():
        for stem in stems:
            for dtype, result in results[stem].items():
                key = f"{rule}_{dtype}"
                arrays[stem][key] = result["relevance"]
                arrays[stem].update({f"{key}_{k}": v for k, v in result.items()
                                     if k not in ("relevance", "target")})
    return arrays


def lxt_references(models_dir=OUT):
    """Every variant's LXT relevance into <stem>_lxt.npz, the targets chosen
    by the float64 model and used for float32 too; README lines appended."""
    lines = ["\nLXT references (python bench/transformers.py lxt): <stem>_lxt.npz holds, for rule in "
             "(attnlrp, cplrp) and dtype in (f64, f32):\n"
             "  <rule>_<dtype>: LXT 2.1 efficient relevance of the logit 'target' (classifiers: the "
             "predicted class; language models: the top token at the last position, T-1), backward from "
             "gradient 1 there; token models: (inputs_embeds * inputs_embeds.grad).sum(-1), shape (N, T), "
             "at the word-embedding output (position and token-type embeddings and the additive mask are "
             "added inside the model: they take their own share, none of it here); ViT: pixel_values * "
             "grad, shape (N, 3, H, W) (NCHW, not summed over channels).\n"
             "  <rule>_<dtype>_hidden<k>: the same (x * grad).sum(-1) at hidden_states[k] (k=0: the "
             "embedding output, k=L: the last layer's output; GPT-2's last is after ln_f), (N, T).\n"
             "  <rule>_<dtype>_logit: the explained logits; target: (N,) int (the float64 model's).\n"
             "  Rules: AttnLRP = LXT's default map (BERT: LXT's modeling_bert; GPT-2, LLaMA: attnLRP); "
             "CP-LRP = LXT's cp_LRP map (GPT-2, LLaMA); BERT (no LXT map): LXT's modeling_bert with "
             "its matmul halvings removed and query/key detached; HF ViT (no LXT map): LXT's patches "
             "(identity rule on ViTIntermediate's GELU, layer_norm_forward, patch_attention / "
             "patch_cp_attention).\n"
             "  *_mask language models: the last position of the padded sample is itself padding; its own "
             "embedding keeps its share (the residual), the other padded tokens get 0.\n"]
    stems = [v[0] for v in VARIANTS]
    for stem, arrays in lxt_all(stems, models_dir).items():
        np.savez(os.path.join(models_dir, f"{stem}_lxt.npz"), **arrays)
        n = len(arrays["target"])
        lines.append(f"{stem}_lxt.npz: target {arrays['target'].tolist()}, relevance shape "
                     f"{arrays['attnlrp_f64'].shape}, sums attnlrp_f64 "
                     f"{np.round(arrays['attnlrp_f64'].reshape(n, -1).sum(1), 4).tolist()} vs "
                     f"logits {np.round(arrays['attnlrp_f64_logit'], 4).tolist()}\n")
        print(lines[-1], end="", flush=True)
    with open(os.path.join(models_dir, "README.txt"), "a") as f:
        f.writelines(lines)


# -------------------------------------------------------------- lrpnb side

def lrpnb_inputs(arrays, double):
    """The exported inputs as lrpnb takes them: a dict of the token inputs
    (ids and mask as given: int64), or the pixels NHWC."""
    if "pixel_values" in arrays:
        x = arrays["pixel_values"].transpose(0, 2, 3, 1)
        return x.astype(np.float64 if double else np.float32)
    return {k: v for k, v in arrays.items() if k != "logits"}


def lrpnb_explain(net, arrays, rule, double, target, layers=None):
    """lrpnb's relevance of ``target``, shaped as LXT's (token models: the
    input_ids entry (N, T); ViT: NCHW). With ``layers``, (relevance,
    {node: relevance})."""
    import lrpnb

    composite = lrpnb.AttnLRP() if rule == "attnlrp" else lrpnb.CPLRP()
    X = lrpnb_inputs(arrays, double)
    kw = dict(dtype=np.float64 if double else np.float32) if isinstance(X, dict) else {}
    out = net.explain(X, target=np.asarray(target), composite=composite, layers=layers, **kw)
    relevance, kept = (out.relevance, out.layers) if layers is not None else (out, None)
    relevance = relevance["input_ids"] if isinstance(relevance, dict) else relevance.transpose(0, 3, 1, 2)
    return relevance if layers is None else (relevance, kept)


def agreement(got, expected):
    """(max |a - b| / max |b|, correlation) of two relevance arrays."""
    got, expected = np.asarray(got, np.float64).ravel(), np.asarray(expected, np.float64).ravel()
    return (float(np.abs(got - expected).max() / np.abs(expected).max()),
            float(np.corrcoef(got, expected)[0, 1]))


def compare_one(models_dir, stem, references):
    """Rows (stem, dtype, rule, forward error, max rel diff, correlation, or
    the error) of lrpnb against LXT's ``references`` (a <stem>_lxt dict)."""
    import lrpnb

    rows = []
    for double in (True, False):
        file = stem + ("_f64" if double else "")
        dtype = "f64" if double else "f32"
        with np.load(os.path.join(models_dir, file + ".npz")) as f:
            arrays = dict(f)
        try:
            net = lrpnb.load(os.path.join(models_dir, file + ".onnx"))
            X = lrpnb_inputs(arrays, double)
            out = net.forward(X, dtype=np.float64 if double else np.float32) if isinstance(X, dict) \
                else net.forward(X)
            forward = float(np.abs(out - arrays["logits"]).max() / np.abs(arrays["logits"]).max())
        except Exception as exc:  # an unsupported graph is a row of the table, not the end of it
            rows.append((stem, dtype, "load", f"{type(exc).__name__}: {exc}"))
            continue
        for rule in RULES:
            try:
                got = lrpnb_explain(net, arrays, rule, double, references["target"])
                rows.append((stem, dtype, rule, forward) + agreement(got, references[f"{rule}_{dtype}"]))
            except Exception as exc:
                rows.append((stem, dtype, rule, f"{type(exc).__name__}: {exc}"))
    return rows


def compare(models_dir=OUT, stems=None):
    """lrpnb against the stored LXT references of every variant: prints and
    returns the rows of ``compare_one``."""
    rows = []
    for stem in stems or [v[0] for v in VARIANTS]:
        with np.load(os.path.join(models_dir, f"{stem}_lxt.npz")) as f:
            rows += compare_one(models_dir, stem, dict(f))
    print(f"{'model':<11} {'dtype':<5} {'rule':<8} {'forward':>8} {'max rel':>9} {'1 - corr':>9}")
    for row in rows:
        if len(row) == 4:
            print(f"{row[0]:<11} {row[1]:<5} {row[2]:<8} {row[3][:300]}")
        else:
            print(f"{row[0]:<11} {row[1]:<5} {row[2]:<8} {row[3]:8.1e} {row[4]:9.2e} {1 - row[5]:9.1e}")
    return rows



# ------------------------------------------------------------------ speed

BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512, num_labels=2)


def _rss(field="VmRSS"):
    """This process's resident memory (or its peak, VmHWM) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise ValueError(f"/proc/self/status has no {field} line")


def network_bytes(net, arrays):
    """(activations, weights) in bytes of an lrpnb network on ``arrays``:
    every value of a forward pass (inputs and node outputs, in the
    network's dtype) and every array a layer holds."""
    X = lrpnb_inputs(arrays, False)
    given = [tuple(x.shape) for x in (X.values() if isinstance(X, dict) else [X])]
    shapes = given + net.output_shapes(given, net.layers)
    itemsize = np.dtype(net.dtype).itemsize
    activations = sum(int(np.prod(shape)) for shape in shapes) * itemsize
    weights = sum(v.nbytes for layer in net.layers for v in vars(layer).values() if isinstance(v, np.ndarray))
    return activations, weights


def memory_child(path, arrays_path, result):
    """The ``memory-child`` command: the peak resident memory lrpnb's
    AttnLRP explain of the BERT-base batch adds, in a fresh process (large
    arrays mmapped, MALLOC_MMAP_THRESHOLD_ set by the caller, so that freed
    memory leaves the process and the peak is the explain's own)."""
    import lrpnb

    net = lrpnb.load(path)
    with np.load(arrays_path) as f:
        arrays = dict(f)
    small = {k: v[:1] for k, v in arrays.items()}
    lrpnb_explain(net, small, "attnlrp", False, [0])  # kernels compiled outside the measurement
    before = _rss()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    lrpnb_explain(net, arrays, "attnlrp", False, [0] * len(arrays["input_ids"]))
    activations, weights = network_bytes(net, arrays)
    with open(result, "w") as f:
        json.dump({"extra": _rss("VmHWM") - before, "activations": activations, "weights": weights}, f)


def _timed(fn, repeats):
    """The median seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def speed(batch=4, seq=128, repeats=3, threads=2):
    """The BERT-base geometry (12 layers, hidden 768, 12 heads, random
    weights, float32) explained with AttnLRP by LXT (efficient, CPU,
    ``threads`` torch threads) and lrpnb, in turns in one process;
    sequences/s of each, their agreement, and lrpnb's peak memory (a child
    process) against activations + weights. Returns a dict."""
    import tempfile

    import torch

    torch.set_num_threads(threads)
    arrays = inputs("bert", True, batch, seq)
    with tempfile.TemporaryDirectory() as tmp:
        path, arrays_path = os.path.join(tmp, "bert_base.onnx"), os.path.join(tmp, "inputs.npz")
        model = build("bert", **BERT_BASE)
        state = model.state_dict()
        np.savez(arrays_path, **arrays)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(logits_module(model, list(arrays)),
                              tuple(torch_inputs(arrays, torch.float32).values()), path, dynamo=False,
                              opset_version=17, input_names=list(arrays), output_names=["logits"])
        del model
        result = _in_turns(path, state, arrays, repeats)
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
        memory = os.path.join(tmp, "memory.json")
        subprocess.run([sys.executable, os.path.abspath(__file__), "memory-child", path, arrays_path, memory],
                       check=True, env=env, capture_output=True)
        with open(memory) as f:
            result.update(json.load(f))
    result.update(batch=batch, seq=seq, threads=threads, repeats=repeats)
    return result


def _in_turns(path, state, arrays, repeats):
    """LXT and lrpnb (the ONNX file ``path``) on the BERT-base batch, in
    turns after one warm-up call of each: their seconds per batch and
    agreement (patches this process's transformers with LXT for good)."""
    import lrpnb

    net = lrpnb.load(path)
    batch = len(arrays["input_ids"])
    target = np.zeros(batch, np.int64)
    results = {}

    def run_lrpnb():
        results["lrpnb"] = lrpnb_explain(net, arrays, "attnlrp", False, target)

    def run_lxt():
        results["lxt"] = lxt_run()["relevance"]

    lxt_run = _lxt_bert_base(state, arrays, target)
    run_lrpnb(), run_lxt()  # compiles lrpnb's kernels; warms torch
    lrpnb_s, lxt_s = [], []
    for _ in range(repeats):
        lrpnb_s.append(_timed(run_lrpnb, 1))
        lxt_s.append(_timed(run_lxt, 1))
    max_rel, corr = agreement(results["lrpnb"], results["lxt"])
    return {"lrpnb_seq_per_s": batch / float(np.median(lrpnb_s)), "lxt_seq_per_s": batch / float(np.median(lxt_s)),
            "lrpnb_s": lrpnb_s, "lxt_s": lxt_s, "max_rel": max_rel, "corr": corr}


def _lxt_bert_base(state, arrays, target):
    """A function running LXT's AttnLRP on the BERT-base model (patching
    this process's transformers for good): returns lxt_explain's dict."""
    import torch

    lxt_patch("bert", "attnlrp")
    model = build("bert", state=state, **BERT_BASE)
    for p in model.parameters():
        p.requires_grad_(False)
    tensors = torch_inputs(arrays, torch.float32)

    def run():
        x = model.get_input_embeddings()(tensors["input_ids"]).detach().requires_grad_(True)
        logits = model(inputs_embeds=x, attention_mask=tensors["attention_mask"], return_dict=True).logits
        logits[torch.arange(len(target)), torch.as_tensor(target)].sum().backward()
        return {"relevance": (x * x.grad).sum(-1).detach().numpy()}
    return run


def print_speed(result):
    """The speed result as bench/README.md's lines."""
    gib = 2.0 ** 30
    batch = result["batch"]
    print(f"BERT-base geometry, batch {batch}, {result['seq']} tokens, float32, AttnLRP, "
          f"{result['threads']} threads each, {result['repeats']} turns each (median; best):")
    for name, label in (("lxt", "LXT 2.1 efficient (torch CPU)"), ("lrpnb", "lrpnb (CPU)")):
        times = result[name + "_s"]
        print(f"  {label:<30} {batch / np.median(times):.2f}; {batch / min(times):.2f} sequences/s "
              f"(s per batch: {', '.join(f'{t:.2f}' for t in times)})")
    print(f"  lrpnb / LXT: {result['lrpnb_seq_per_s'] / result['lxt_seq_per_s']:.2f}x (medians); "
          f"{min(result['lxt_s']) / min(result['lrpnb_s']):.2f}x (best)")
    print(f"  agreement: max rel {result['max_rel']:.2e}, correlation {result['corr']:.9f}")
    total = result["weights"] + result["extra"]
    print(f"  lrpnb memory: weights {result['weights'] / gib:.3f} GiB + explain's peak extra "
          f"{result['extra'] / gib:.3f} GiB = {total / gib:.3f} GiB; activations + weights "
          f"{(result['activations'] + result['weights']) / gib:.3f} GiB "
          f"(activations {result['activations'] / gib:.3f} GiB): "
          f"{total / (result['activations'] + result['weights']):.2f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["export", "lxt", "compare", "speed", "lxt-child",
                                                "memory-child"])
    parser.add_argument("--repeats", type=int, default=3, help="speed: turns of each")
    parser.add_argument("--threads", type=int, default=2, help="speed: torch threads")
    parser.add_argument("--out", default=OUT, help="the models' folder")
    parser.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.command == "export":
        export(args.out)
    elif args.command == "lxt":
        lxt_references(args.out)
    elif args.command == "compare":
        compare(args.out)
    elif args.command == "speed":
        # lrpnb's kernels take numba's thread count, read once at numba's import
        os.environ["NUMBA_NUM_THREADS"] = str(args.threads)
        result = speed(repeats=args.repeats, threads=args.threads)
        print_speed(result)
        print(json.dumps(result))
    elif args.command == "lxt-child":
        lxt_child(*args.files)
    elif args.command == "memory-child":
        memory_child(*args.files)


if __name__ == "__main__":
    main()

"""ONNX import of transformer graphs: small graphs built with onnx.helper
(attention with a mask, LayerNorm written out, both forms of GELU, a gated
MLP, RMSNorm, rotary embeddings, GPT-2's rows merged into the batch axis)
against onnx's reference evaluator, relevance conserved where the rules
conserve, and Hugging Face exports (made here, skipped without torch and
transformers) against torch."""
import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import lrpnb  # noqa: E402

N, T, D, H, V = 2, 6, 8, 2, 20
RNG = np.random.default_rng(22)


def weight(name, *shape, scale=0.5):
    return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(np.float32), name)


def const(name, value, dtype=np.float32):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype), name))


def model(path, nodes, inits, inputs, output_shape, output="y"):
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(
        output, TensorProto.FLOAT, [N, *output_shape])], inits)
    made = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(made)
    onnx.save(made, path)
    return path


def ids_input(name="ids"):
    return helper.make_tensor_value_info(name, TensorProto.INT64, [N, T])


def embedding(out="h"):
    """Token ids -> (N, T, D) embeddings plus constant position embeddings."""
    return ([helper.make_node("Gather", ["E", "ids"], ["e"]), helper.make_node("Add", ["e", "P"], [out])],
            [weight("E", V, D), weight("P", 1, T, D)])


def compare(path, feeds, tolerance=1e-5):
    """lrpnb's forward against onnx's reference evaluator; returns the network."""
    expected = ReferenceEvaluator(str(path)).run(None, feeds)[0]
    net = lrpnb.load(path)
    got = np.asarray(net.forward(feeds if len(feeds) > 1 else next(iter(feeds.values()))))
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= tolerance * np.abs(expected).max()
    return net


def ids(count=N):
    return RNG.integers(0, V, (count, T))


def attention_nodes(x, out, mask=None, bias=True):
    """Multi-head self-attention of (N, T, D) ``x`` (BERT's export: Reshape, Transpose, MatMul, Div, the
    additive mask, Softmax, MatMul, Transpose, Reshape, the output dense layer)."""
    d = D // H
    nodes, inits = [const("heads", [N, T, H, d], np.int64), const("merged", [N, T, D], np.int64),
                    const("sqrt_d", math.sqrt(d))], []
    for part, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
        inits.append(weight(f"W{part}", D, D))
        nodes.append(helper.make_node("MatMul", [x, f"W{part}"], [f"{part}0"]))
        if bias:
            inits.append(weight(f"b{part}", D))
            nodes.append(helper.make_node("Add", [f"b{part}", f"{part}0"], [f"{part}1"]))
        nodes += [helper.make_node("Reshape", [f"{part}1" if bias else f"{part}0", "heads"], [f"{part}2"]),
                  helper.make_node("Transpose", [f"{part}2"], [f"{part}3"], perm=perm)]
    nodes += [helper.make_node("MatMul", ["q3", "k3"], ["s0"]), helper.make_node("Div", ["s0", "sqrt_d"], ["s1"])]
    if mask is not None:
        nodes += [helper.make_node("Add", ["s1", mask], ["s2"])]
    nodes += [helper.make_node("Softmax", ["s2" if mask else "s1"], ["a"], axis=-1),
              helper.make_node("MatMul", ["a", "v3"], ["o0"]),
              helper.make_node("Transpose", ["o0"], ["o1"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["o1", "merged"], ["o2"]),
              helper.make_node("MatMul", ["o2", "Wo"], [out])]
    return nodes, inits + [weight("Wo", D, D)]


def mask_nodes(out="m"):
    """BERT's extended attention mask: (1 - mask[:, None, None, :]) * finfo(float32).min."""
    return [const("ax1", [1], np.int64), const("ax2", [2], np.int64), const("one", 1.0),
            const("low", np.finfo(np.float32).min),
            helper.make_node("Unsqueeze", ["mask", "ax1"], ["m0"]),
            helper.make_node("Unsqueeze", ["m0", "ax2"], ["m1"]),
            helper.make_node("Cast", ["m1"], ["m2"], to=TensorProto.FLOAT),
            helper.make_node("Sub", ["one", "m2"], ["m3"]), helper.make_node("Mul", ["m3", "low"], [out])]


def test_attention_with_mask_matches_reference(tmp_path):
    embed, inits = embedding()
    attention, more = attention_nodes("h", "att", mask="m")
    classify = [const("first", 0, np.int64), helper.make_node("Add", ["att", "h"], ["r"]),
                helper.make_node("LayerNormalization", ["r", "g", "b"], ["n"], axis=-1, epsilon=1e-5),
                helper.make_node("Gather", ["n", "first"], ["c"], axis=1),
                helper.make_node("Gemm", ["c", "Wc", "bc"], ["y"], transB=1)]
    path = model(tmp_path / "attention.onnx", embed + mask_nodes() + attention + classify,
                 inits + more + [weight("g", D), weight("b", D), weight("Wc", 3, D), weight("bc", 3)],
                 [ids_input(), helper.make_tensor_value_info("mask", TensorProto.INT64, [N, T])], [3])
    mask = np.ones((N, T), dtype=np.int64)
    mask[1, 4:] = 0
    net = compare(path, {"ids": ids(), "mask": mask})
    assert net.inputs == ("ids", "mask")
    relevance = net.explain({"ids": ids(), "mask": mask}, rule="epsilon", param=1e-9, dtype=np.float64)
    assert set(relevance) == {"ids"} and relevance["ids"].shape == (N, T) and relevance["ids"].dtype == np.float64
    # padded tokens: their keys get no attention, their values nothing; only the classified token reads them
    # through the residual path of the first token, which is not theirs
    assert np.all(relevance["ids"][1, 4:] == 0)


def test_token_types_are_read_but_not_explained(tmp_path):
    """Token ids, token types and positions are all looked up in tables: the explained input is the one read
    by the largest table (the vocabulary)."""
    nodes = [helper.make_node("Gather", ["E", "ids"], ["e"]), helper.make_node("Gather", ["Tt", "types"], ["t"]),
             helper.make_node("Gather", ["P2", "positions"], ["p"]), helper.make_node("Add", ["e", "t"], ["s"]),
             helper.make_node("Add", ["s", "p"], ["h"]), helper.make_node("MatMul", ["h", "Wv"], ["y"])]
    path = model(tmp_path / "types.onnx", nodes, [weight("E", V, D), weight("Tt", 2, D), weight("P2", T, D),
                                                  weight("Wv", D, 3)],
                 [ids_input(), ids_input("types"), ids_input("positions")], [T, 3])
    feeds = {"ids": ids(), "types": RNG.integers(0, 2, (N, T)), "positions": np.tile(np.arange(T), (N, 1))}
    net = compare(path, feeds)
    assert net.inputs == ("ids", "types", "positions") and net.explained == ("ids",)
    relevance = net.explain(feeds, rule="epsilon", param=1e-9, dtype=np.float64, position=-1)
    assert set(relevance) == {"ids"}


def test_attention_conserves_relevance(tmp_path):
    """Without biases, the dense layers, the products (each factor half, by the epsilon rule), the embedding
    and the layouts conserve: the token relevance sums to the explained logit (the softmax absorbs
    x (R - s sum R) summed, so the scores' path is left out here: Q K^T is read as logits directly)."""
    embed, inits = embedding()
    nodes = [helper.make_node("Gather", ["E", "ids"], ["h"])]
    d = D // H
    nodes += [const("heads", [N, T, H, d], np.int64), const("flat", [N, H * T * T], np.int64)]
    for part, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1])):
        nodes += [helper.make_node("MatMul", ["h", f"W{part}"], [f"{part}0"]),
                  helper.make_node("Reshape", [f"{part}0", "heads"], [f"{part}2"]),
                  helper.make_node("Transpose", [f"{part}2"], [f"{part}3"], perm=perm)]
    nodes += [helper.make_node("MatMul", ["q3", "k3"], ["s"]), helper.make_node("Reshape", ["s", "flat"], ["f"]),
              helper.make_node("MatMul", ["f", "Wc"], ["y"])]
    path = model(tmp_path / "scores.onnx", nodes, [inits[0], weight("Wq", D, D), weight("Wk", D, D),
                                                   weight("Wc", H * T * T, 3)], [ids_input()], [3])
    tokens = ids()
    net = compare(path, {"ids": tokens})
    logits = np.asarray(net.forward(tokens, dtype=np.float64))
    relevance = net.explain(tokens, rule="epsilon", param=1e-12, dtype=np.float64, target=[0, 1])
    np.testing.assert_allclose(relevance.sum(axis=1), logits[[0, 1], [0, 1]], rtol=1e-9)


def feed_forward(x, out, form):
    """Dense, an activation written out in ONNX (GELU erf, GELU tanh, or SwiGLU's gated SiLU), dense."""
    nodes = [helper.make_node("MatMul", [x, "W1"], ["u"])]
    if form == "erf":
        nodes += [const("sqrt2", math.sqrt(2)), const("one_", 1.0), const("half", 0.5),
                  helper.make_node("Div", ["u", "sqrt2"], ["u1"]), helper.make_node("Erf", ["u1"], ["u2"]),
                  helper.make_node("Add", ["u2", "one_"], ["u3"]), helper.make_node("Mul", ["u", "u3"], ["u4"]),
                  helper.make_node("Mul", ["u4", "half"], ["act"])]
    elif form == "tanh":
        nodes += [const("half", 0.5), const("three", 3.0), const("c", 0.044715), const("k", math.sqrt(2 / math.pi)),
                  const("one_", 1.0), helper.make_node("Mul", ["u", "half"], ["uh"]),
                  helper.make_node("Pow", ["u", "three"], ["u1"]), helper.make_node("Mul", ["u1", "c"], ["u2"]),
                  helper.make_node("Add", ["u", "u2"], ["u3"]), helper.make_node("Mul", ["u3", "k"], ["u4"]),
                  helper.make_node("Tanh", ["u4"], ["u5"]), helper.make_node("Add", ["u5", "one_"], ["u6"]),
                  helper.make_node("Mul", ["uh", "u6"], ["act"])]
    else:  # SwiGLU: silu(x W1) * (x W3)
        nodes += [helper.make_node("Sigmoid", ["u"], ["s"]), helper.make_node("Mul", ["u", "s"], ["silu"]),
                  helper.make_node("MatMul", [x, "W3"], ["up"]), helper.make_node("Mul", ["silu", "up"], ["act"])]
    nodes.append(helper.make_node("MatMul", ["act", "W2"], [out]))
    return nodes, [weight("W1", D, 2 * D), weight("W2", 2 * D, D)] + ([weight("W3", D, 2 * D)] * (form == "glu"))


def layer_norm_nodes(x, out):
    """LayerNorm written out: (x - mean) / sqrt(var + eps) * gamma + beta."""
    return [const("axes", [-1], np.int64), const("two", 2.0), const("eps", 1e-5),
            helper.make_node("ReduceMean", [x], ["mu"], axes=[-1]), helper.make_node("Sub", [x, "mu"], ["dx"]),
            helper.make_node("Pow", ["dx", "two"], ["sq"]), helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1]),
            helper.make_node("Add", ["var", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["sd"]),
            helper.make_node("Div", ["dx", "sd"], ["nx"]), helper.make_node("Mul", ["nx", "gamma"], ["nxg"]),
            helper.make_node("Add", ["nxg", "beta"], [out])], [weight("gamma", D), weight("beta", D)]


def rms_norm_nodes(x, out, form="one_over"):
    """LLaMA's RMSNorm as exported: Cast, Pow 2, ReduceMean, Add eps, Sqrt, Div(1, .), Mul, Cast, Mul gamma
    (``form``: 1 / sqrt by Div or Reciprocal, or x / sqrt)."""
    divide = {"one_over": [helper.make_node("Div", ["one", "rms"], ["inv"]),
                           helper.make_node("Mul", ["xc", "inv"], ["nx"])],
              "reciprocal": [helper.make_node("Reciprocal", ["rms"], ["inv"]),
                             helper.make_node("Mul", ["inv", "xc"], ["nx"])],
              "divide": [helper.make_node("Div", ["xc", "rms"], ["nx"])]}[form]
    return [const("two", 2.0), const("eps", 1e-6), const("one", 1.0),
            helper.make_node("Cast", [x], ["xc"], to=TensorProto.FLOAT),
            helper.make_node("Pow", ["xc", "two"], ["sq"]), helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[-1]),
            helper.make_node("Add", ["ms", "eps"], ["me"]), helper.make_node("Sqrt", ["me"], ["rms"])] + divide + [
            helper.make_node("Cast", ["nx"], ["nc"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["rgamma", "nc"], [out])], [weight("rgamma", D)]


@pytest.mark.parametrize("form", ["reciprocal", "divide"])
def test_rms_norm_forms(tmp_path, form):
    embed, inits = embedding()
    normalise, weights = rms_norm_nodes("h", "y", form)
    path = model(tmp_path / f"rms_{form}.onnx", embed + normalise, inits + weights, [ids_input()], [T, D])
    net = compare(path, {"ids": ids()})
    assert [type(n.layer).__name__ for n in net.nodes][-1] == "RMSNorm"


@pytest.mark.parametrize("form", ["erf", "tanh", "glu"])
@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_norms_and_activations_match_reference(tmp_path, form, norm):
    embed, inits = embedding()
    normalise, weights = (layer_norm_nodes if norm == "layer" else rms_norm_nodes)("h", "n")
    ffn, more = feed_forward("n", "f", form)
    path = model(tmp_path / f"{norm}_{form}.onnx", embed + normalise + ffn, inits + weights + more,
                 [ids_input()], [T, D], output="f")
    net = compare(path, {"ids": ids()})
    kinds = [type(node.layer).__name__ for node in net.nodes]
    assert ("LayerNorm" if norm == "layer" else "RMSNorm") in kinds
    assert {"erf": "GELU", "tanh": "GELU", "glu": "SiLU"}[form] in kinds
    assert "Pow" not in kinds and "Sigmoid" not in kinds
    relevance = net.explain({"ids": ids()}, rule="epsilon", param=1e-9, dtype=np.float64, position=-1)
    assert relevance["ids"].shape == (N, T) and np.isfinite(relevance["ids"]).all()


def test_rotary_embedding_matches_reference(tmp_path):
    """q cos + rotate_half(q) sin with constant tables, rotate_half by Slice, Neg and Concat (LLaMA's)."""
    embed, inits = embedding()
    half = D // 2
    angles = np.arange(T)[:, None] * (0.1 ** np.arange(half))[None]
    tables = np.concatenate([angles, angles], axis=-1)
    nodes = embed + [const("cos", np.cos(tables)[None]), const("sin", np.sin(tables)[None]),
                     const("s0", [0], np.int64), const("s1", [half], np.int64), const("s2", [D], np.int64),
                     const("ax", [-1], np.int64),
                     helper.make_node("MatMul", ["h", "Wq"], ["q"]), helper.make_node("Mul", ["q", "cos"], ["qc"]),
                     helper.make_node("Slice", ["q", "s0", "s1", "ax"], ["x1"]),
                     helper.make_node("Slice", ["q", "s1", "s2", "ax"], ["x2"]),
                     helper.make_node("Neg", ["x2"], ["nx2"]),
                     helper.make_node("Concat", ["nx2", "x1"], ["rot"], axis=-1),
                     helper.make_node("Mul", ["rot", "sin"], ["rs"]), helper.make_node("Add", ["qc", "rs"], ["y"])]
    path = model(tmp_path / "rotary.onnx", nodes, inits + [weight("Wq", D, D)], [ids_input()], [T, D])
    compare(path, {"ids": ids()})


def test_concat_of_constants_and_activations_matches_reference(tmp_path):
    """Class and register tokens (constants, one of them expanded to the batch) before the tokens, and a
    concatenation of two activations along the token axis."""
    embed, inits = embedding()
    nodes = embed + [const("regs", RNG.standard_normal((N, 2, D)).astype(np.float32)[:1].repeat(N, 0)),
                     helper.make_node("MatMul", ["h", "Wq"], ["q"]),
                     helper.make_node("Concat", ["regs", "h", "q"], ["y"], axis=1)]
    path = model(tmp_path / "concat.onnx", nodes, inits + [weight("Wq", D, D)], [ids_input()], [2 + 2 * T, D])
    compare(path, {"ids": ids()})


def test_gpt2_rows_and_causal_mask_match_reference(tmp_path):
    """GPT-2's Conv1D (x.view(-1, D) -> Gemm -> view(N, T, D')) and its causal mask Where(c, scores, min)."""
    embed, inits = embedding()
    causal = np.tril(np.ones((T, T), dtype=bool))[None, None]
    nodes = embed + [const("rows", [-1, D], np.int64), const("back", [N, T, 3 * D], np.int64),
                     const("heads", [N, T, H, D // H], np.int64), const("split", [D, D, D], np.int64),
                     const("causal", causal, bool), const("low", np.finfo(np.float32).min),
                     helper.make_node("Reshape", ["h", "rows"], ["r"]),
                     helper.make_node("Gemm", ["r", "Wa", "ba"], ["g"]),
                     helper.make_node("Reshape", ["g", "back"], ["qkv"]),
                     helper.make_node("Split", ["qkv", "split"], ["q", "k", "v"], axis=2)]
    for part, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1])):
        nodes += [helper.make_node("Reshape", [part, "heads"], [f"{part}4"]),
                  helper.make_node("Transpose", [f"{part}4"], [f"{part}5"], perm=perm)]
    nodes += [helper.make_node("MatMul", ["q5", "k5"], ["s"]),
              helper.make_node("Where", ["causal", "s", "low"], ["sm"]),
              helper.make_node("Softmax", ["sm"], ["y"], axis=-1)]
    path = model(tmp_path / "gpt2_rows.onnx", nodes, inits + [weight("Wa", D, 3 * D), weight("ba", 3 * D)],
                 [ids_input()], [H, T, T])
    net = compare(path, {"ids": ids()})
    assert [type(n.layer).__name__ for n in net.nodes].count("Linear") == 1


def test_mask_built_with_comparisons_matches_reference(tmp_path):
    """Hugging Face's causal mask with padding: where(causal + mask == 0, min, causal), then scattered into
    the causal mask (Equal, Where, ScatterND on the mask input): read as a Rearrange, Scale and Bias of it."""
    embed, inits = embedding()
    causal = np.triu(np.full((T, T), np.finfo(np.float32).min, np.float32), 1)[None, None]
    everywhere = np.stack(np.meshgrid(np.arange(N), [0], np.arange(T), np.arange(T), indexing="ij"), -1)
    nodes = embed + [const("causal", np.broadcast_to(causal, (N, 1, T, T))), const("zero", 0.0),
                     const("low", np.finfo(np.float32).min), const("ax", [1, 2], np.int64),
                     const("where", everywhere, np.int64),
                     helper.make_node("Unsqueeze", ["mask", "ax"], ["m0"]),
                     helper.make_node("Cast", ["m0"], ["m1"], to=TensorProto.FLOAT),
                     helper.make_node("Add", ["causal", "m1"], ["m2"]),
                     helper.make_node("Equal", ["m2", "zero"], ["m3"]),
                     helper.make_node("Where", ["m3", "low", "causal"], ["m4"]),
                     helper.make_node("ScatterND", ["causal", "where", "m4"], ["m5"]),
                     helper.make_node("MatMul", ["h", "Wq"], ["q"]), helper.make_node("Transpose", ["h"], ["k"],
                                                                                       perm=[0, 2, 1]),
                     helper.make_node("MatMul", ["q", "k"], ["s"]), helper.make_node("Unsqueeze", ["s", "one"], ["s1"]),
                     helper.make_node("Add", ["s1", "m5"], ["s2"]), helper.make_node("Softmax", ["s2"], ["y"], axis=-1),
                     const("one", [1], np.int64)]
    nodes = [nodes[-1]] + nodes[:-1]
    path = model(tmp_path / "mask.onnx", nodes, inits + [weight("Wq", D, D)],
                 [ids_input(), helper.make_tensor_value_info("mask", TensorProto.INT64, [N, T])], [1, T, T])
    mask = np.ones((N, T), dtype=np.int64)
    mask[1, 3:] = 0
    net = compare(path, {"ids": ids(), "mask": mask})
    assert "ScatterND" not in [type(n.layer).__name__ for n in net.nodes]


def test_lm_logits_keep_tokens_and_unsupported_nodes_are_named(tmp_path):
    embed, inits = embedding()
    path = model(tmp_path / "lm.onnx", embed + [helper.make_node("MatMul", ["h", "Wv"], ["y"])],
                 inits + [weight("Wv", D, V)], [ids_input()], [T, V])
    net = compare(path, {"ids": ids()})
    assert net.inputs == ("ids",)
    relevance = net.explain(ids(), rule="epsilon", param=1e-9, dtype=np.float64, target=[3, 4])
    assert relevance.shape == (N, T) and np.all(relevance[:, :-1] == 0)  # the last position reads its own token
    bad = model(tmp_path / "bad.onnx", embed + [const("two", 2.0), helper.make_node("Pow", ["h", "two"], ["y"],
                                                                                     name="square")],
                inits, [ids_input()], [T, D])
    with pytest.raises(ValueError, match=r"bad.onnx: node 'square' \(Pow\): Pow of activations is read only in"):
        lrpnb.load(bad)
    refused = [([helper.make_node("Softmax", ["h"], ["y"], axis=0, name="bad")], "not along the batch"),
               ([helper.make_node("Greater", ["h", "h"], ["c"]), helper.make_node("Where", ["c", "h", "h"], ["y"],
                                                                                   name="bad")],
                "unsupported operator"),
               ([const("c", np.ones((T, T), np.float32)), helper.make_node("MatMul", ["c", "h"], ["y"], name="bad")],
                "a product of a constant and activations"),
               ([const("s", [N * T, D], np.int64), helper.make_node("Reshape", ["h", "s"], ["r"]),
                 helper.make_node("Relu", ["r"], ["y"], name="bad")], "merged with the batch axis")]
    for k, (nodes, message) in enumerate(refused):
        path = model(tmp_path / f"refused{k}.onnx", embed + nodes, inits, [ids_input()], [T, D])
        with pytest.raises(ValueError, match=rf"refused{k}.onnx: node '(bad|/?\w+)' \(\w+\): .*{message}"):
            lrpnb.load(path)


# ------------------------------------------------------------ Hugging Face exports (torch, transformers)
def hf_models():
    """The four models, small, with weights drawn wider than transformers' default: (name, model, inputs)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    ids_ = torch.randint(0, 100, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 6:] = 0
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  attn_implementation="eager")
    made = [("bert", transformers.BertForSequenceClassification(transformers.BertConfig(
                vocab_size=100, max_position_embeddings=16, num_labels=3, **common)), (ids_, mask)),
            ("vit", transformers.ViTForImageClassification(transformers.ViTConfig(
                image_size=16, patch_size=4, num_labels=3, **common)), (torch.randn(2, 3, 16, 16),)),
            ("gpt2", transformers.GPT2LMHeadModel(transformers.GPT2Config(
                vocab_size=100, n_positions=16, n_embd=32, n_layer=2, n_head=4, attn_implementation="eager")), (ids_,)),
            ("llama", transformers.LlamaForCausalLM(transformers.LlamaConfig(
                vocab_size=100, max_position_embeddings=16, num_key_value_heads=2, use_cache=False, **common)),
             (ids_,))]
    for _, module, _ in made:
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.2)
        module.eval()
    return torch, made


class Logits:
    """The model's logits alone, its inputs named (LlamaForCausalLM's logits_to_keep would become a graph
    input otherwise)."""

    def __new__(cls, torch, module, names):
        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.module = module

            def forward(self, *args):
                return self.module(**dict(zip(names, args))).logits
        return Wrapped().eval()


@pytest.mark.parametrize("name, masked, dynamic", [
    ("bert", True, False), ("vit", False, False), ("gpt2", False, False), ("gpt2", True, False), ("llama", False, False),
    ("llama", True, False), ("bert", True, True), ("vit", False, True), ("gpt2", True, True), ("llama", True, True)])
def test_hugging_face_exports_forward_as_torch(tmp_path, name, masked, dynamic):
    """Fixed batch sizes and, with dynamic_axes, the batch size left open (the shapes' arithmetic folded with
    the batch marker)."""
    torch, made = hf_models()
    _, module, args = next(m for m in made if m[0] == name)
    names = {"bert": ["input_ids", "attention_mask"], "vit": ["pixel_values"]}.get(name, ["input_ids"])
    if masked and name != "bert":
        args, names = made[0][2], ["input_ids", "attention_mask"]
    wrapped = Logits(torch, module, names)
    path = tmp_path / f"{name}.onnx"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, args, str(path), input_names=names, output_names=["logits"], dynamo=False,
                          opset_version=17, dynamic_axes={n: {0: "batch"} for n in names + ["logits"]} if dynamic
                          else None)
    with torch.no_grad():
        expected = wrapped(*args).numpy()
    net = lrpnb.load(path)
    feeds = {n: a.numpy() for n, a in zip(names, args)}
    got = np.asarray(net.forward(feeds["pixel_values"].transpose(0, 2, 3, 1) if name == "vit" else feeds))
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_softmax_over_an_inner_axis_matches_reference(tmp_path):
    """A softmax over the tokens (axis 1 of (N, T, D)) rather than the last
    axis: the axis moved last, normalised, moved back."""
    embed, inits = embedding()
    nodes = embed + [helper.make_node("Softmax", ["h"], ["p"], axis=1),
                     helper.make_node("MatMul", ["p", "Wv"], ["y"])]
    path = model(tmp_path / "tokens.onnx", nodes, inits + [weight("Wv", D, V)], [ids_input()], [T, V])
    net = compare(path, {"ids": ids()})
    relevance = net.explain(ids(), composite=lrpnb.AttnLRP(), dtype=np.float64, target=[1, 2])
    assert relevance.shape == (N, T) and np.isfinite(relevance).all() and np.abs(relevance).max() > 0
    old = helper.make_model(onnx.load(path).graph, opset_imports=[helper.make_opsetid("", 11)])
    onnx.save(old, tmp_path / "opset11.onnx")
    with pytest.raises(ValueError, match=r"opset11.onnx: .*softmax of opset 11 over axis 1 .*opset_version >= 13"):
        lrpnb.load(tmp_path / "opset11.onnx")


def test_a_final_softmax_of_language_model_logits_is_left_out_of_explanations(tmp_path):
    embed, inits = embedding()
    inits += [weight("Wv", D, V)]
    logits = helper.make_node("MatMul", ["h", "Wv"], ["logits"])
    path = model(tmp_path / "probabilities.onnx", embed + [logits, helper.make_node("Softmax", ["logits"], ["y"])],
                 inits, [ids_input()], [T, V])
    plain = model(tmp_path / "logits.onnx", embed + [helper.make_node("MatMul", ["h", "Wv"], ["y"])], inits,
                  [ids_input()], [T, V])
    net = compare(path, {"ids": ids()})
    assert isinstance(net.layers[-1], lrpnb.SoftMax)
    tokens = ids()
    np.testing.assert_allclose(net.forward(tokens, dtype=np.float64).sum(axis=-1), 1, rtol=1e-12)
    relevance, scores = net.explain(tokens, rule="epsilon", param=1e-9, dtype=np.float64, target=[3, 4],
                                    return_scores=True)
    # explanations start from the logits, as those of the model without its final softmax
    expected, logits = lrpnb.load(plain).explain(tokens, rule="epsilon", param=1e-9, dtype=np.float64,
                                                 target=[3, 4], return_scores=True)
    np.testing.assert_array_equal(scores, logits)
    np.testing.assert_array_equal(relevance, expected)


def test_a_float_sequence_input_is_read_as_tokens(tmp_path):
    """A float input (N, T, D) whose first reader is a normalisation over its
    last axis (a model exported with its input embeddings) keeps ONNX's
    layout: (N, T, D) in, (N, T, D) relevance out."""
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["n"], axis=-1),
             helper.make_node("MatMul", ["n", "W1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]), const("first", 0, np.int64),
             helper.make_node("Gather", ["r", "first"], ["cls"], axis=1),
             helper.make_node("Gemm", ["cls", "W2", "b2"], ["y"])]
    inits = [weight("g", D), weight("b", D), weight("W1", D, D), weight("b1", D), weight("W2", D, 3), weight("b2", 3)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [N, T, D])]
    path = model(tmp_path / "sequence.onnx", nodes, inits, inputs, [3])
    X = RNG.standard_normal((N, T, D)).astype(np.float32)
    net = compare(path, {"x": X})
    assert net.input_shape == (T, D)
    relevance = net.explain(X.astype(np.float64), target=[0, 2], rule="epsilon", param=1e-9)
    # the class token alone reaches the scores: every other token gets nothing
    assert relevance.shape == (N, T, D) and np.all(relevance[:, 1:] == 0) and np.abs(relevance[:, 0]).min() > 0

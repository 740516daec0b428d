"""``lrpnb explain`` and ``explain_dataset`` on token-id data: (N, T) integer
ids with an attention mask for a model of several inputs, --dtype and
--position, resuming, and the refusals."""
import h5py
import numpy as np
import pytest

import lrpnb
from lrpnb.cli import main
from lrpnb.layers import Embedding, Flatten, Linear, Mul
from lrpnb.model_graph import write_graph
from lrpnb.network import Network, Node

from conftest import interrupting

V, D, T, C = 12, 3, 5, 4
RULE = dict(rule="epsilon", param="1e-9")


def _classifier(seed=0):
    """Two inputs, as an exported BERT's: input_ids through an Embedding,
    attention_mask through an Embedding of 0 -> zeros and 1 -> ones that
    gates the token vectors (a masked token reaches no output), then a
    dense layer to C classes."""
    rng = np.random.default_rng(seed)
    nodes = [Node("words", Embedding(rng.normal(size=(V, D))), "input_ids"),
             Node("mask", Embedding(np.array([[0.0] * D, [1.0] * D])), "attention_mask"),
             Node("masked", Mul(gate=1), ["words", "mask"]),
             Node("flat", Flatten(), "masked"),
             Node("logits", Linear(rng.normal(size=(T * D, C)), rng.normal(size=C)), "flat")]
    return Network(nodes, inputs=("input_ids", "attention_mask"))


def _language_model(seed=0):
    """One input: token vectors and a dense layer to V logits per position (N, T, V)."""
    rng = np.random.default_rng(seed)
    return Network([Embedding(rng.normal(size=(V, D))), Linear(rng.normal(size=(D, V)), rng.normal(size=V))])


def _bert_like(path, batch=2, length=5, vocab=12, width=4, classes=3, seed=0):
    """A one-head BERT-like classifier as ONNX: input_ids through an embedding table, attention_mask as
    BERT's additive mask (1 - mask) * finfo.min on the attention scores, one attention layer with a
    residual sum, the first token's vector to ``classes`` logits."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def array(name, *shape):
        return numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)

    def constant(name, value, dtype=np.float32):
        return numpy_helper.from_array(np.asarray(value, dtype), name)

    node = helper.make_node
    nodes = [node("Gather", ["E", "input_ids"], ["h"]),
             node("Unsqueeze", ["attention_mask", "axis1"], ["m0"]), node("Cast", ["m0"], ["m1"], to=TensorProto.FLOAT),
             node("Sub", ["one", "m1"], ["m2"]), node("Mul", ["m2", "low"], ["m"]),
             node("MatMul", ["h", "Wq"], ["q"]), node("MatMul", ["h", "Wk"], ["k"]), node("MatMul", ["h", "Wv"], ["v"]),
             node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]), node("MatMul", ["q", "kt"], ["s0"]),
             node("Div", ["s0", "scale"], ["s1"]), node("Add", ["s1", "m"], ["s2"]),
             node("Softmax", ["s2"], ["a"], axis=-1), node("MatMul", ["a", "v"], ["o"]),
             node("Add", ["o", "h"], ["r"]), node("Gather", ["r", "first"], ["c"], axis=1),
             node("Gemm", ["c", "Wc", "bc"], ["logits"], transB=1)]
    weights = [array("E", vocab, width), array("Wq", width, width), array("Wk", width, width), array("Wv", width, width),
               array("Wc", classes, width), array("bc", classes), constant("axis1", [1], np.int64),
               constant("one", 1.0), constant("low", np.finfo(np.float32).min), constant("scale", np.sqrt(width)),
               constant("first", 0, np.int64)]
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, [batch, length])
              for name in ("input_ids", "attention_mask")]
    graph = helper.make_graph(nodes, "bert_like", inputs,
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])], weights)
    made = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(made)
    onnx.save(made, str(path))
    return path


def _tokens(count=7, seed=1):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, size=(count, T)).astype(np.int64)
    mask = np.ones((count, T), np.int64)
    mask[0, 3:] = 0
    mask[2, 1:] = 0
    return ids, mask


def _h5(path):
    with h5py.File(path, "r") as handle:
        return {name: handle[name][()] for name in handle if not name.startswith("_")}


def test_token_ids_and_mask_file_give_each_token_its_relevance(tmp_path):
    net = _classifier()
    ids, mask = _tokens()
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "mask.npy", mask)
    summary = lrpnb.explain_dataset(net, tmp_path / "ids.npy", tmp_path / "r.npy", mask=tmp_path / "mask.npy",
                                    dtype="float32", batch_size=3, verbose=False, **RULE)
    assert summary.explained == 7 and "in float32" in summary.method
    relevance = np.load(tmp_path / "r.npy")
    expected = net.explain({"input_ids": ids, "attention_mask": mask}, rule="epsilon", param=1e-9,
                           dtype=np.float32)["input_ids"]
    assert relevance.shape == (7, T) and relevance.dtype == np.float32
    np.testing.assert_allclose(relevance, expected, rtol=1e-6, atol=1e-7)
    assert np.all(relevance[mask == 0] == 0) and np.all(relevance[mask == 1] != 0)
    # the explained logit is shared out among the tokens (no bias in the rule's way but the layer's)
    scores = net.scores({"input_ids": ids, "attention_mask": mask})
    logits = scores[np.arange(7), scores.argmax(axis=1)]
    bias = net.layers[-1].B[scores.argmax(axis=1)]
    np.testing.assert_allclose(relevance.sum(axis=1), logits - bias, rtol=1e-4, atol=1e-5)
    # float64 arithmetic on request
    lrpnb.explain_dataset(net, tmp_path / "ids.npy", tmp_path / "r64.npy", mask=tmp_path / "mask.npy",
                          dtype="float64", verbose=False, **RULE)
    wide = np.load(tmp_path / "r64.npy")
    assert wide.dtype == np.float64 and np.abs(wide - relevance).max() < 1e-5


def test_hdf5_data_takes_the_attention_mask_beside_the_ids(tmp_path, capsys):
    net = _classifier()
    ids, mask = _tokens()
    with h5py.File(tmp_path / "text.h5", "w") as handle:
        handle["input_ids"], handle["attention_mask"] = ids, mask
    lrpnb.explain_dataset(net, f"{tmp_path / 'text.h5'}:input_ids", tmp_path / "r.h5", verbose=False, **RULE)
    result = _h5(tmp_path / "r.h5")
    expected, scores = net.explain({"input_ids": ids, "attention_mask": mask}, rule="epsilon", param=1e-9,
                                   return_scores=True)
    np.testing.assert_allclose(result["relevance"], expected["input_ids"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result["scores"], scores, rtol=1e-12)
    assert np.array_equal(result["prediction"], scores.argmax(axis=1))
    assert np.all(result["relevance"][mask == 0] == 0)
    # without a mask anywhere every token is attended, and the run says so
    np.save(tmp_path / "ids.npy", ids)
    lrpnb.explain_dataset(net, tmp_path / "ids.npy", tmp_path / "ones.npy", verbose=False, **RULE)
    assert "no attention mask (--mask): every token is attended" in capsys.readouterr().err
    unmasked = net.explain({"input_ids": ids, "attention_mask": np.ones_like(mask)}, rule="epsilon", param=1e-9)
    np.testing.assert_allclose(np.load(tmp_path / "ones.npy"), unmasked["input_ids"], rtol=1e-12, atol=1e-12)


def test_an_interrupted_token_run_resumes(tmp_path, capsys):
    ids, mask = _tokens(count=10)
    with h5py.File(tmp_path / "text.h5", "w") as handle:
        handle["input_ids"], handle["attention_mask"] = ids, mask
    data = f"{tmp_path / 'text.h5'}:input_ids"
    net = _classifier()
    net.explain = interrupting(net.explain, 3)
    out = tmp_path / "r.h5"
    with pytest.raises(KeyboardInterrupt):
        lrpnb.explain_dataset(net, data, out, batch_size=2, **RULE)
    assert "interrupted after 4 of 10 samples" in capsys.readouterr().err
    summary = lrpnb.explain_dataset(_classifier(), data, out, batch_size=2, verbose=False, **RULE)
    assert summary.explained == 6 and "resuming" in capsys.readouterr().err
    lrpnb.explain_dataset(_classifier(), data, tmp_path / "whole.h5", batch_size=2, verbose=False, **RULE)
    whole, resumed = _h5(tmp_path / "whole.h5"), _h5(out)
    for name in whole:
        np.testing.assert_array_equal(resumed[name], whole[name], err_msg=name)
    # another arithmetic is other settings: not continued
    net.explain = interrupting(_classifier().explain, 2)
    with pytest.raises(KeyboardInterrupt):
        lrpnb.explain_dataset(net, data, tmp_path / "other.h5", batch_size=2, **RULE)
    with pytest.raises(ValueError, match="other settings"):
        lrpnb.explain_dataset(_classifier(), data, tmp_path / "other.h5", batch_size=2, dtype="float32", **RULE)


def test_command_explains_a_language_model_at_a_position(tmp_path):
    net = _language_model()
    write_graph(net, tmp_path / "lm.lrpnb")
    ids, _ = _tokens()
    np.save(tmp_path / "ids.npy", ids)
    out = tmp_path / "r.h5"
    assert main(["explain", "--model", str(tmp_path / "lm.lrpnb"), "--data", str(tmp_path / "ids.npy"),
                 "--out", str(out), "--rule", "epsilon", "--param", "1e-9", "--position", "2",
                 "--dtype", "float32", "--target", "3"]) == 0
    result = _h5(out)
    # without attention, the logits at position 2 depend on token 2 alone
    assert result["relevance"].shape == (7, T) and result["relevance"].dtype == np.float32
    assert np.all(result["relevance"][:, [0, 1, 3, 4]] == 0)
    logits = net.scores(ids, position=2)
    np.testing.assert_allclose(result["scores"], logits, rtol=1e-5)
    np.testing.assert_allclose(result["relevance"][:, 2], logits[:, 3] - net.layers[1].B[3], rtol=1e-4)
    assert np.all(result["target"] == 3)
    with h5py.File(out, "r") as handle:
        assert "at position 2" in handle.attrs["method"] and "float32" in handle.attrs["method"]
    # the last position by default
    assert main(["explain", "--model", str(tmp_path / "lm.lrpnb"), "--data", str(tmp_path / "ids.npy"),
                 "--out", str(tmp_path / "last.npy"), "--rule", "epsilon", "--param", "1e-9"]) == 0
    last = np.load(tmp_path / "last.npy")
    assert np.all(last[:, :-1] == 0) and np.all(last[:, -1] != 0)


def test_token_options_are_refused_where_they_do_not_apply(tmp_path, capsys):
    net = _classifier()
    ids, mask = _tokens()
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "floats.npy", ids.astype(np.float64))
    np.save(tmp_path / "short.npy", mask[:, :3])
    bad = mask.copy()
    bad[4, 1] = 2
    np.save(tmp_path / "bad.npy", bad)
    run = dict(verbose=False, **RULE)
    with pytest.raises(ValueError, match=r"short\.npy: the attention mask must have the token ids' shape"):
        lrpnb.explain_dataset(net, tmp_path / "ids.npy", tmp_path / "r.npy", mask=tmp_path / "short.npy", **run)
    with pytest.raises(ValueError, match=r"bad\.npy: sample 4: the attention mask holds values other than 0 and 1"):
        lrpnb.explain_dataset(net, tmp_path / "ids.npy", tmp_path / "r.npy", mask=tmp_path / "bad.npy", **run)
    with pytest.raises(ValueError, match="--mask goes with token ids"):
        lrpnb.explain_dataset(net, tmp_path / "floats.npy", tmp_path / "r.npy", mask=tmp_path / "ids.npy", **run)
    with pytest.raises(ValueError, match="--mean, --std and --channel-order normalise images"):
        lrpnb.explain_dataset(net, tmp_path / "ids.npy", tmp_path / "r.npy", mean=[0.5], **run)
    with pytest.raises(ValueError, match="token data is explained on one machine"):
        lrpnb.explain_dataset(net, tmp_path / "ids.npy", tmp_path / "r.npy", workers=2, **run)
    with pytest.raises(ValueError, match="has no attention_mask input"):
        lrpnb.explain_dataset(_language_model(), tmp_path / "ids.npy", tmp_path / "r.npy",
                              mask=tmp_path / "ids.npy", **run)
    with pytest.raises(ValueError, match="--dtype must be float32 or float64"):
        lrpnb.explain_dataset(net, tmp_path / "ids.npy", tmp_path / "r.npy", dtype="float16", **run)
    np.save(tmp_path / "mask.npy", mask)
    np.save(tmp_path / "big.npy", np.full((7, T), V + 5, np.int64))
    with pytest.raises(ValueError, match=r"big\.npy, sample 0: .*17"):  # tried on the model before any output
        lrpnb.explain_dataset(net, tmp_path / "big.npy", tmp_path / "r.npy", mask=tmp_path / "mask.npy", **run)
    assert not (tmp_path / "r.npy").exists()
    # the command says the same in one line
    assert main(["explain", "--model", "lenet5_synthetic", "--data", str(tmp_path / "floats.npy"), "--out",
                 str(tmp_path / "r.h5"), "--mask", str(tmp_path / "ids.npy")]) != 0
    assert "--mask goes with token ids" in capsys.readouterr().err


def test_command_explains_an_onnx_classifier_with_ids_and_mask(tmp_path, capsys):
    model = _bert_like(tmp_path / "bert.onnx", length=T, vocab=V)
    net = lrpnb.load(model)
    ids, mask = _tokens()
    with h5py.File(tmp_path / "text.h5", "w") as handle:
        handle["input_ids"], handle["attention_mask"] = ids, mask
    np.save(tmp_path / "mask.npy", mask)
    base = ["explain", "--model", str(model), "--rule", "epsilon", "--param", "1e-9", "--batch-size", "3"]
    assert main(base + ["--data", f"{tmp_path / 'text.h5'}:input_ids", "--out", str(tmp_path / "r.h5"),
                        "--dtype", "float64"]) == 0
    result = _h5(tmp_path / "r.h5")
    expected, scores = net.explain({"input_ids": ids, "attention_mask": mask}, rule="epsilon", param=1e-9,
                                   dtype=np.float64, return_scores=True)
    assert result["relevance"].dtype == np.float64 and result["relevance"].shape == (7, T)
    np.testing.assert_allclose(result["relevance"], expected["input_ids"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result["scores"], scores, rtol=1e-9)
    # padded tokens: their keys get no attention, and only the first token is classified
    assert np.all(result["relevance"][mask == 0] == 0) and np.all(result["relevance"][mask == 1] != 0)
    # the mask from its own file: the same relevance, in the float32 model's own arithmetic by default
    assert main(base + ["--data", str(tmp_path / "text.h5:input_ids"), "--mask", str(tmp_path / "mask.npy"),
                        "--out", str(tmp_path / "r.npy")]) == 0
    relevance = np.load(tmp_path / "r.npy")
    assert relevance.dtype == np.float32
    np.testing.assert_allclose(relevance, expected["input_ids"], rtol=1e-4, atol=1e-5)
    assert "no attention mask" not in capsys.readouterr().err
    # the transformer composites by name
    for name in ("AttnLRP", "CPLRP"):
        out = tmp_path / f"{name}.npy"
        assert main(["explain", "--model", str(model), "--data", str(tmp_path / "text.h5:input_ids"), "--out",
                     str(out), "--composite", name, "--dtype", "float64"]) == 0
        composite = getattr(lrpnb, name)()
        expected = net.explain({"input_ids": ids, "attention_mask": mask}, composite=composite, dtype=np.float64)
        np.testing.assert_allclose(np.load(out), expected["input_ids"], rtol=1e-12, atol=1e-14)

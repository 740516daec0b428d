"""lrpnb's AttnLRP and CP-LRP of Hugging Face transformers exported to ONNX
against LXT 2.1's efficient implementation (issue targets: float64 max
relative difference <= 1e-4 and correlation >= 0.9999, float32 correlation
>= 0.999; forward within 1e-4 of torch in float32).

The models (small BERT, ViT, GPT-2, LLaMA with grouped-query attention,
weights drawn wider than transformers' default) are made and exported here,
in a temporary folder, by bench/transformers.py; LXT runs in child processes
(its patches of transformers cannot be undone). Needs the peers extra
(torch, transformers 4.52, lxt 2.1, onnx): skipped where they do not import.
"""
import importlib.util
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEMS = ("bert", "vit", "gpt2", "gpt2_mask", "llama", "llama_mask")


def _peers_missing():
    """Why the peers cannot run here, or None."""
    try:
        import lxt.efficient  # noqa: F401
        import onnx  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except Exception as exc:  # newer transformers break lxt's import with errors of any type
        return f"needs torch, transformers 4.52, lxt 2.1 and onnx (the peers extra): {type(exc).__name__}: {exc}"
    return None


pytestmark = pytest.mark.skipif(_peers_missing() is not None, reason=str(_peers_missing()))


@pytest.fixture(scope="module")
def bench():
    """bench/transformers.py as a module (its file name would shadow the
    transformers package if its folder were on sys.path)."""
    spec = importlib.util.spec_from_file_location("bench_transformers", ROOT / "bench" / "transformers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def made(bench, tmp_path_factory):
    """(folder of the exports, {stem: LXT's arrays})."""
    folder = str(tmp_path_factory.mktemp("tf-models"))
    bench.export(folder)
    return folder, bench.lxt_all(STEMS, folder)


@pytest.fixture(scope="module")
def rows(bench, made):
    """{(stem, dtype, rule): (forward error, max rel diff, correlation)}."""
    folder, references = made
    table = {}
    for stem in STEMS:
        for row in bench.compare_one(folder, stem, references[stem]):
            assert len(row) == 6, f"lrpnb failed on {row[0]} ({row[1]}, {row[2]}): {row[3]}"
            table[row[:3]] = row[3:]
    return table


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("rule", ("attnlrp", "cplrp"))
def test_float64_agrees_with_lxt(rows, stem, rule):
    _, max_rel, corr = rows[(stem, "f64", rule)]
    assert max_rel <= 1e-4, f"{stem} {rule} float64: max relative difference {max_rel:.2e} > 1e-4"
    assert corr >= 0.9999, f"{stem} {rule} float64: correlation {corr:.6f} < 0.9999"


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("rule", ("attnlrp", "cplrp"))
def test_float32_agrees_with_lxt(rows, stem, rule):
    forward, _, corr = rows[(stem, "f32", rule)]
    assert forward <= 1e-4, f"{stem} float32: forward differs from torch by {forward:.2e} (relative)"
    assert corr >= 0.999, f"{stem} {rule} float32: correlation {corr:.6f} < 0.999"


def test_rules_differ_where_the_models_are_not_linear(made):
    """The comparison can fail: AttnLRP and CP-LRP give different maps on
    these weights (attention not uniform), so agreeing with LXT under both
    is not agreeing with one map twice."""
    _, references = made
    for stem in STEMS:
        a, c = references[stem]["attnlrp_f64"], references[stem]["cplrp_f64"]
        assert np.abs(a - c).max() > 0.05 * np.abs(a).max(), f"{stem}: AttnLRP and CP-LRP nearly equal"


def test_padded_tokens_get_no_relevance(bench, made):
    """BERT's padded tokens (the last 3 of sample 1) get exactly 0, as in
    LXT, where the additive mask is a constant; the others do not."""
    import lrpnb

    folder, references = made
    with np.load(f"{folder}/bert_f64.npz") as f:
        arrays = dict(f)
    net = lrpnb.load(f"{folder}/bert_f64.onnx")
    for rule in ("attnlrp", "cplrp"):
        got = bench.lrpnb_explain(net, arrays, rule, True, references["bert"]["target"])
        assert np.all(got[1, -3:] == 0) and np.all(references["bert"][f"{rule}_f64"][1, -3:] == 0)
        assert np.all(got[:, :5] != 0)

"""lrpnb's own model format (.lrpnb): exact round trips of every layer type
and of rule presets, the refusal of malformed files, and the advice for
other frameworks' model files."""
import json
import pickle
import zipfile

import numpy as np
import pytest

import lrpnb
from lrpnb import layers as layer_module
from lrpnb.cli import main
from lrpnb.inputs import input_shape
from lrpnb.model_graph import DESCRIPTION_MEMBER, FORMAT_VERSION, LAYERS
from lrpnb.network import Node

RULES = [(None, None), ("epsilon", 0.01), ("alphabeta", 2.0), ("zplus", None), ("flat", None),
         ("gamma", 0.25), ("gradient", None), ("guided_backprop", None)]


def graph_network(dtype, seed=0):
    """A graph with every layer type lrpnb has: a grouped, dilated, padded
    convolution, BatchNorm, a residual Add, a Concat of two pools, LRN, the
    activations and a dense head; input (N, 8, 8, 4)."""
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return rng.normal(size=shape).astype(dtype)

    gamma = normal(6)
    gamma[0] = -abs(gamma[0])
    nodes = [
        Node("conv0", lrpnb.Convolution(normal(3, 3, 2, 6), normal(6), stride=1, padding=2, dilation=(2, 2),
                                        groups=2), "input"),
        Node("bn", lrpnb.BatchNorm(gamma, normal(6), normal(6), rng.random(6).astype(dtype) + 0.5,
                                   eps=1e-3), "conv0"),
        Node("relu", lrpnb.Rect(), "bn"),
        Node("conv1", lrpnb.Convolution(normal(1, 1, 6, 6), normal(6)), "relu"),
        Node("residual", lrpnb.Add(), ["relu", "conv1"]),
        Node("max", lrpnb.MaxPool((2, 2), (2, 2), padding=(0, 1, 0, 1)), "residual"),
        Node("avg", lrpnb.AveragePool((3, 3), (2, 2), padding=1, count_include_pad=True), "residual"),
        Node("joined", lrpnb.Concat(), ["max", "avg"]),
        Node("lrn", lrpnb.LRN(3, alpha=1e-3, beta=0.5, bias=2.0), "joined"),
        Node("sum", lrpnb.SumPool((2, 2), (1, 1)), "lrn"),
        Node("tanh", lrpnb.Tanh(), "sum"),
        Node("sigmoid", lrpnb.Sigmoid(), "tanh"),
        Node("same", lrpnb.Identity(), "sigmoid"),
        Node("gap", lrpnb.GlobalAveragePool(), "same"),
        Node("flat", lrpnb.Flatten(), "gap"),
        Node("dense", lrpnb.Linear(normal(12, 5), normal(5)), "flat"),
        Node("softmax", lrpnb.SoftMax(), "dense"),
    ]
    return lrpnb.Network(nodes)


def assert_same_network(a, b):
    assert [(n.name, n.inputs, n.layer.describe(), type(n.layer)) for n in a.nodes] == \
        [(n.name, n.inputs, n.layer.describe(), type(n.layer)) for n in b.nodes]
    for x, y in zip(a.layers, b.layers):
        assert (x.preset.name, x.lrp_explicit) == (y.preset.name, y.lrp_explicit)
        for name in ("W", "B", "scale", "shift"):
            if hasattr(x, name):
                assert getattr(x, name).dtype == getattr(y, name).dtype
                assert getattr(x, name).tobytes() == getattr(y, name).tobytes()


def assert_same_outputs(a, b, X):
    assert a.scores(X).tobytes() == b.scores(X).tobytes()
    for rule, param in RULES:
        expected = a.explain(X, rule=rule, param=param, return_layer_sums=True)
        actual = b.explain(X, rule=rule, param=param, return_layer_sums=True)
        for x, y in zip(expected, actual):
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), (rule, param)
    composite = lrpnb.EpsilonPlusFlat()
    assert a.explain(X, composite=composite).tobytes() == b.explain(X, composite=composite).tobytes()


def test_every_layer_type_has_an_entry():
    names = set(layer_module.__all__) - {"Layer", "Weighted"}
    assert set(LAYERS) == names


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_graph_round_trip_is_bit_identical(tmp_path, dtype):
    net = graph_network(dtype)
    net.set_lrp_parameters("epsilon", 0.25, nodes=["conv1", "residual"])
    net.node("conv0").layer.set_lrp_parameters("zb", (np.array([-1.0, -2.0, -1.5, -0.5]), 2.0))
    net.node("dense").layer.set_lrp_parameters("alpha", 2)
    net.input_shape = (8, 8, 4)
    path = tmp_path / "graph.lrpnb"
    lrpnb.save(net, path)
    back = lrpnb.load(path)
    assert_same_network(net, back)
    assert back.input_shape == (8, 8, 4)
    assert back.node("conv0").layer.preset.name == "zb"
    assert back.node("dense").layer.lrp_param == 2.0
    assert back.node("residual").layer.lrp_explicit and not back.node("relu").layer.lrp_explicit
    X = np.random.default_rng(1).normal(size=(3, 8, 8, 4)).astype(dtype)
    assert_same_outputs(net, back, X)
    # the presets themselves (rule=None above) include z^B's per-channel bounds
    assert net.explain(X).tobytes() == back.explain(X).tobytes()
    # and numpy itself opens the file: members are .npy arrays and model.json
    with np.load(path, allow_pickle=False) as archive:
        description = json.loads(archive[DESCRIPTION_MEMBER])
        assert archive["0.W"].tobytes() == net.layers[0].W.tobytes()
    assert description["format"] == "lrpnb-graph" and description["version"] == 1  # one input: version 1
    assert description["lrpnb_version"] == lrpnb.__version__
    assert [node["layer"] for node in description["nodes"]][:3] == ["Convolution", "BatchNorm", "Rect"]
    assert description["nodes"][0]["params"] == {"stride": [1, 1], "padding": [2, 2, 2, 2],
                                                 "dilation": [2, 2], "groups": 2}


def test_batchnorm_keeps_a_negative_zero_shift(tmp_path):
    layer = lrpnb.BatchNorm(np.array([-1.0, 2.0]), np.zeros(2), np.zeros(2), np.ones(2), eps=0.0)
    layer.shift = np.array([-0.0, 0.0])
    lrpnb.save(lrpnb.Network([layer]), tmp_path / "bn.lrpnb")
    back = lrpnb.load(tmp_path / "bn.lrpnb").layers[0]
    assert back.shift.tobytes() == layer.shift.tobytes() and back.scale.tobytes() == layer.scale.tobytes()


def test_lenet5_round_trip_and_info(tmp_path, capsys):
    net = lrpnb.load("lenet5_synthetic")
    net.layers[0].set_lrp_parameters("epsilon", 0.5)
    path = tmp_path / "lenet.lrpnb"
    lrpnb.save(net, path)
    back = lrpnb.load(path)
    assert back.is_sequential and [n.name for n in back.nodes] == [str(k) for k in range(len(net.layers))]
    assert_same_network(net, back)
    X = np.random.default_rng(2).random((2,) + input_shape(net))
    assert_same_outputs(net, back, X)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    count = sum(layer.W.size + layer.B.size for layer in net.layers if hasattr(layer, "W"))
    assert "Convolution 5 5 1 10" in out and f"total parameters: {count:,}" in out
    # a toolbox chain read from .lrpnb goes back to the toolbox's text format
    lrpnb.save(back, tmp_path / "lenet.txt")
    assert lrpnb.load(tmp_path / "lenet.txt").scores(X).tobytes() == net.scores(X).tobytes()


def test_format_can_be_named_for_any_extension(tmp_path):
    net = graph_network(np.float64)
    lrpnb.save(net, tmp_path / "model.bin", fmt="lrpnb")
    assert_same_network(net, lrpnb.load(tmp_path / "model.bin", fmt="lrpnb"))


def test_graph_to_a_toolbox_format_names_the_lrpnb_format(tmp_path):
    net = graph_network(np.float64)
    for name in ("model.txt", "model.nn"):
        with pytest.raises(ValueError, match=r"toolbox's model formats hold chains.*"
                                             r"lrpnb.save\(net, \"model.lrpnb\"\)"):
            lrpnb.save(net, tmp_path / name)
        assert not (tmp_path / name).exists()


def test_foreign_layers_are_refused_before_writing(tmp_path):
    class Doubling(lrpnb.Layer):
        def forward(self, X, backend=None):
            return 2 * X

    with pytest.raises(ValueError, match=r"node 1 \('1'\): Doubling is not one of lrpnb's layers"):
        lrpnb.save(lrpnb.Network([lrpnb.Rect(), Doubling()]), tmp_path / "x.lrpnb")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- hostile files
def saved(tmp_path):
    net = lrpnb.Network([Node("conv", lrpnb.Convolution(np.ones((2, 2, 1, 3)), np.zeros(3)), "input"),
                         Node("relu", lrpnb.Rect(), "conv"),
                         Node("both", lrpnb.Add(), ["conv", "relu"]),
                         Node("flat", lrpnb.Flatten(), "both"),
                         Node("dense", lrpnb.Linear(np.ones((12, 2)), np.zeros(2)), "flat")])
    path = tmp_path / "good.lrpnb"
    lrpnb.save(net, path)
    return path


def rewrite(source, target, edit=None, members=None, text=None):
    """A copy of the archive ``source`` at ``target``: its description
    edited by ``edit(description)`` (or replaced by ``text``), members
    replaced or added ({name: bytes}, None removes one)."""
    with zipfile.ZipFile(source) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    description = json.loads(contents[DESCRIPTION_MEMBER])
    if edit is not None:
        edit(description)
    contents[DESCRIPTION_MEMBER] = text if text is not None else json.dumps(description).encode()
    for name, data in (members or {}).items():
        if data is None:
            contents.pop(name)
        else:
            contents[name] = data
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return target


def npy_bytes(array, allow_pickle=False):
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def set_field(k, key, value):
    def edit(description):
        description["nodes"][k][key] = value
    return edit


HOSTILE = {
    "bad json": (dict(text=b"{\"format\": "), r"model.json: not valid JSON"),
    "nan in json": (dict(text=b"{\"format\": NaN}"), r"not valid JSON.*NaN"),
    "not an object": (dict(text=b"[1, 2]"), r"must be a JSON object"),
    "other format": (dict(edit=lambda d: d.update(format="keras")), r"format is 'keras', not 'lrpnb-graph'"),
    "newer version": (dict(edit=lambda d: d.update(version=FORMAT_VERSION + 1)), r"upgrade lrpnb"),
    "unknown field": (dict(edit=lambda d: d.update(extra=1)), r"unknown \['extra'\]"),
    "unknown layer": (dict(edit=set_field(1, "layer", "Swish")), r"node 1 \('relu'\): unknown layer type 'Swish'"),
    "duplicate name": (dict(edit=set_field(1, "name", "conv")), r"node 1 \('conv'\): the name is used twice"),
    "unknown input": (dict(edit=set_field(3, "inputs", ["nowhere"])),
                      r"node 3 \('flat'\): reads 'nowhere', which no node outputs"),
    "cycle": (dict(edit=set_field(1, "inputs", ["both"])), r"node 1 \('relu'\): reads 'both', a later node.*cycle"),
    "self loop": (dict(edit=set_field(1, "inputs", ["relu"])), r"node 1 \('relu'\): reads 'relu'.*cycle"),
    "input as a name": (dict(edit=set_field(1, "name", "input")), r"node 1: its name must be"),
    "one input to Add": (dict(edit=set_field(2, "inputs", ["conv"])), r"node 2 \('both'\): .*Add takes two"),
    "bad stride": (dict(edit=lambda d: d["nodes"][0]["params"].update(stride="2")),
                   r"node 0 \('conv'\): Convolution parameter 'stride' must be a list of 2 ints"),
    "missing parameter": (dict(edit=lambda d: d["nodes"][0]["params"].pop("groups")),
                          r"node 0 \('conv'\): Convolution takes the parameters"),
    "bad groups": (dict(edit=lambda d: d["nodes"][0]["params"].update(groups=2)), r"node 0 \('conv'\): .*groups"),
    "missing array": (dict(members={"4.W.npy": None}),
                      r"node 4 \('dense'\): array 'W': the member '4.W.npy' is missing"),
    "declared shape": (dict(edit=lambda d: d["nodes"][4]["arrays"]["W"].update(shape=[12, 3])),
                       r"node 4 \('dense'\): array 'W' \(4.W.npy\): holds shape \(12, 2\).*says \(12, 3\)"),
    "declared dtype": (dict(edit=lambda d: d["nodes"][4]["arrays"]["W"].update(dtype="float32")),
                       r"node 4 \('dense'\): array 'W' \(4.W.npy\): holds shape \(12, 2\) of float64"),
    "integer array": (dict(edit=lambda d: d["nodes"][4]["arrays"]["W"].update(dtype="int64"),
                           members={"4.W.npy": npy_bytes(np.ones((12, 2), dtype=np.int64))}),
                      r"node 4 \('dense'\): array 'W': 'dtype' must be one of"),
    "object array": (dict(members={"4.W.npy": npy_bytes(np.array([[None] * 2] * 12), allow_pickle=True)}),
                     r"node 4 \('dense'\): array 'W' \(4.W.npy\): object arrays are refused"),
    "inconsistent shapes": (dict(edit=lambda d: d["nodes"][4]["arrays"]["B"].update(shape=[3]),
                                 members={"4.B.npy": npy_bytes(np.zeros(3))}),
                            r"node 4 \('dense'\): Linear: B must have 2 values"),
    "nan weight": (dict(members={"4.B.npy": npy_bytes(np.array([0.0, np.nan]))}),
                   r"node 4 \('dense'\): Linear: B contains NaN"),
    "truncated array": (dict(members={"4.W.npy": npy_bytes(np.ones((12, 2)))[:-8]}),
                        r"node 4 \('dense'\): array 'W' \(4.W.npy\): the header declares shape \(12, 2\)"),
    "unnamed member": (dict(members={"payload.npy": npy_bytes(np.ones(3))}),
                       r"members that no node names: \['payload.npy'\]"),
    "member named twice": (dict(edit=lambda d: d["nodes"][4]["arrays"]["B"].update(member="0.B.npy")),
                           r"node 4 \('dense'\): array 'B': the member '0.B.npy' is named twice"),
    "bad rule": (dict(edit=set_field(0, "rule", {"name": "epsilon", "param": -1.0, "explicit": True})),
                 r"node 0 \('conv'\): its rule preset: epsilon must be > 0"),
    "unknown rule": (dict(edit=set_field(0, "rule", {"name": "magic", "param": None, "explicit": False})),
                     r"node 0 \('conv'\): its rule preset: unknown LRP rule 'magic'"),
    "huge dilation": (dict(edit=lambda d: d["nodes"][0]["params"].update(dilation=[10**6, 10**6])),
                      r"node 0 \('conv'\): the filter dilated by \(1000000, 1000000\) would take"),
    "input shape that does not fit": (dict(edit=lambda d: d.update(input_shape=[5, 5, 2])),
                                      r"input_shape \[5, 5, 2\]: input does not fit node 0 \('conv'\)"),
    "bad input shape": (dict(edit=lambda d: d.update(input_shape=[0, 3])), r"input_shape must be null or a list"),
    "no description": (dict(members={DESCRIPTION_MEMBER: None}), r"no model.json member"),
    "deep json": (dict(text=b"[" * 100000 + b"]" * 100000), r"not valid JSON"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_malformed_files_name_the_file_and_the_node(tmp_path, case):
    changes, message = HOSTILE[case]
    if changes.get("members", {}).get(DESCRIPTION_MEMBER, 1) is None:
        path = tmp_path / "bad.lrpnb"
        with zipfile.ZipFile(saved(tmp_path)) as good, zipfile.ZipFile(path, "w") as bad:
            for name in good.namelist():
                if name != DESCRIPTION_MEMBER:
                    bad.writestr(name, good.read(name))
    else:
        path = rewrite(saved(tmp_path), tmp_path / "bad.lrpnb", **changes)
    with pytest.raises(ValueError, match=message) as info:
        lrpnb.load(path)
    assert str(path) in str(info.value)


def test_not_an_archive_and_a_declared_bomb(tmp_path):
    garbage = tmp_path / "garbage.lrpnb"
    garbage.write_bytes(b"\x00\x01 not a zip file" * 10)
    with pytest.raises(ValueError, match="cannot read the lrpnb model.*BadZipFile"):
        lrpnb.load(garbage)
    # a header that declares more values than its member holds is refused before any allocation
    forged = npy_bytes(np.ones((12, 2))).replace(b"(12, 2), }", b"(99999,2)}")
    path = rewrite(saved(tmp_path), tmp_path / "bomb.lrpnb", members={"4.W.npy": forged})
    with pytest.raises(ValueError, match=r"node 4 \('dense'\): array 'W' \(4.W.npy\): the header declares "
                                         r"shape \(99999, 2\)") as info:
        lrpnb.load(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- other frameworks
@pytest.mark.parametrize("ext, framework", [(".pt", "PyTorch"), (".pth", "PyTorch"), (".ckpt", "checkpoint"),
                                            (".safetensors", "safetensors"), (".keras", "Keras"),
                                            (".h5", "Keras"), (".pb", "TensorFlow")])
def test_other_frameworks_are_told_to_export_to_onnx(tmp_path, ext, framework):
    path = tmp_path / f"model{ext}"
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match=f"{framework}.*export it to ONNX first") as info:
        lrpnb.load(path)
    assert str(path) in str(info.value) and "--model model.onnx" in str(info.value)
    if ext in (".pt", ".pth"):
        assert 'torch.onnx.export(model.eval(), example_input, "model.onnx", dynamo=False)' in str(info.value)


def test_command_line_model_of_another_framework(tmp_path, capsys):
    path = tmp_path / "model.pt"
    path.write_bytes(b"PK\x03\x04")
    assert main(["info", str(path)]) == 1
    assert "torch.onnx.export(" in capsys.readouterr().err


def test_pytorch_pickles_named_pkl_are_told_to_export(tmp_path):
    zipped = tmp_path / "zipped.pkl"
    with zipfile.ZipFile(zipped, "w") as archive:  # what torch.save writes
        archive.writestr("archive/data.pkl", pickle.dumps({"weight": 1}))
    legacy = tmp_path / "legacy.pkl"
    legacy.write_bytes(b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nq\x00.")
    for path in (zipped, legacy):
        with pytest.raises(ValueError, match=r"PyTorch \(torch.save\) model.*torch.onnx.export") as info:
            lrpnb.load(path)
        assert str(path) in str(info.value)
    # a toolbox pickle that is merely broken keeps its own message
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="toolbox Sequential"):
        lrpnb.load(broken)


def test_h5_data_files_are_untouched():
    # .h5 is a data format too: only model loading refuses it
    from lrpnb.model_io import FOREIGN

    assert ".h5" in FOREIGN and ".h5" not in lrpnb.model_io.FORMATS


def test_an_onnx_import_saves_and_loads_back(tmp_path):
    onnx = pytest.importorskip("onnx", reason="needs the onnx package")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    weights = {"w": rng.normal(size=(4, 2, 3, 3)), "b": rng.normal(size=4), "fc": rng.normal(size=(3, 4 * 5 * 5))}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Add", ["r", "c"], ["s"], name="join"),
             helper.make_node("Flatten", ["s"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(value.astype(np.float32), name) for name, value in weights.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    net = lrpnb.load(tmp_path / "m.onnx")
    lrpnb.save(net, tmp_path / "m.lrpnb")
    back = lrpnb.load(tmp_path / "m.lrpnb")
    assert back.input_shape == net.input_shape == (5, 5, 2)
    assert_same_network(net, back)
    assert_same_outputs(net, back, rng.normal(size=(2, 5, 5, 2)).astype(np.float32))


# ---------------------------------------------------------------- several inputs (format version 2)
def two_input_network():
    """Token ids through an embedding, and a mask path that is not explained."""
    rng = np.random.default_rng(5)
    net = lrpnb.Network([Node("embed", lrpnb.Embedding(rng.normal(size=(10, 4))), "input_ids"),
                         Node("gate", lrpnb.Linear(rng.normal(size=(1, 4)), np.zeros(4)), "attention_mask"),
                         Node("join", lrpnb.Add(), ["embed", "gate"]),
                         Node("scores", lrpnb.Linear(rng.normal(size=(4, 3)), rng.normal(size=3)), "join")],
                        inputs=["input_ids", "attention_mask"], explained=["input_ids"])
    net.input_shapes = {"input_ids": (5,), "attention_mask": (5, 1)}
    return net


def test_several_inputs_round_trip(tmp_path):
    net = two_input_network()
    lrpnb.save(net, tmp_path / "two.lrpnb")
    with zipfile.ZipFile(tmp_path / "two.lrpnb") as archive:
        description = json.loads(archive.read(DESCRIPTION_MEMBER))
    assert description["version"] == 2 and description["inputs"] == ["input_ids", "attention_mask"]
    back = lrpnb.load(tmp_path / "two.lrpnb")
    assert back.inputs == net.inputs and back.explained == ("input_ids",)
    assert back.input_shapes == {"input_ids": (5,), "attention_mask": (5, 1)}
    rng = np.random.default_rng(6)
    X = {"input_ids": rng.integers(0, 10, (3, 5)), "attention_mask": rng.integers(0, 2, (3, 5, 1))}
    np.testing.assert_array_equal(back.forward(X, dtype=np.float64), net.forward(X, dtype=np.float64))
    relevance = back.explain(X, target=1, rule="epsilon", param=0.01, dtype=np.float64)
    assert set(relevance) == {"input_ids"} and relevance["input_ids"].shape == (3, 5)
    np.testing.assert_array_equal(relevance["input_ids"],
                                  net.explain(X, target=1, rule="epsilon", param=0.01, dtype=np.float64)["input_ids"])


def test_one_input_networks_are_still_written_as_version_1(tmp_path):
    with zipfile.ZipFile(saved(tmp_path)) as archive:
        description = json.loads(archive.read(DESCRIPTION_MEMBER))
    assert description["version"] == 1 and "inputs" not in description


def _two_inputs_saved(tmp_path):
    path = tmp_path / "two.lrpnb"
    lrpnb.save(two_input_network(), path)
    return path


HOSTILE_INPUTS = {
    "explained not an input": (lambda d: d.update(explained=["pixels"]), r"'explained' names inputs the model"),
    "inputs not a list": (lambda d: d.update(inputs="input_ids"), r"'inputs' must be a non-empty list"),
    "inputs named twice": (lambda d: d.update(inputs=["input_ids", "input_ids"]), r"'inputs' must be .* distinct"),
    "shapes missing an input": (lambda d: d.update(input_shapes={"input_ids": [5]}),
                                r"'input_shapes' must map every input"),
    "bad shape": (lambda d: d["input_shapes"].update(input_ids=[-1]), r"input_shapes of 'input_ids' must be null"),
    "shape that does not fit": (lambda d: d["input_shapes"].update(attention_mask=[5, 2]),
                                r"input_shapes .*input does not fit node 1 \('gate'\)"),
    "node named like an input": (lambda d: d["nodes"][2].update(name="attention_mask"),
                                 r"node 2: its name must be a non-empty string other than the inputs'"),
    "version 1 with inputs": (lambda d: d.update(version=1), r"unknown \['explained', 'input_shapes', 'inputs'\]"),
    "unread input": (lambda d: d["nodes"][1].update(inputs=["mask"]), r"node 1 \('gate'\): reads 'mask'"),
}


@pytest.mark.parametrize("case", HOSTILE_INPUTS, ids=list(HOSTILE_INPUTS))
def test_malformed_inputs_name_the_file(tmp_path, case):
    edit, message = HOSTILE_INPUTS[case]
    path = rewrite(_two_inputs_saved(tmp_path), tmp_path / "bad.lrpnb", edit=edit)
    with pytest.raises(ValueError, match=message) as info:
        lrpnb.load(path)
    assert str(path) in str(info.value)


def test_info_of_token_networks(tmp_path, capsys):
    lrpnb.save(two_input_network(), tmp_path / "two.lrpnb")
    assert main(["info", str(tmp_path / "two.lrpnb")]) in (0, None)
    out = capsys.readouterr().out
    assert "input input_ids: 5\n" in out and "input attention_mask: 5 x 1 (not explained)" in out
    # the embedding's table, the mask path's 4 + 4 values, the scores' 12 + 3
    assert "total parameters: 63\n" in out and "classes: 3" in out
    chain = lrpnb.Network([lrpnb.Embedding(np.ones((7, 3))), lrpnb.Linear(np.ones((3, 2)), np.zeros(2))])
    assert input_shape(chain) is None  # an embedding's table is no image filter
    lrpnb.save(chain, tmp_path / "chain.lrpnb")
    assert main(["info", str(tmp_path / "chain.lrpnb")]) in (0, None)
    out = capsys.readouterr().out
    assert "input: unknown" in out and "total parameters: 29\n" in out

"""Hostile ONNX models, each built here with onnx.helper: a malformed node,
tensor or attribute, a tensor name defined twice, an opset outside those
read, or random damage to a valid file is a ValueError whose message starts
with the file's path (and names the node and what is wrong), never another
exception, from lrpnb.load and from `lrpnb info` (one line, no traceback)."""
import numpy as np
import pytest

import lrpnb
from lrpnb.cli import main

onnx = pytest.importorskip("onnx", reason="needs the onnx package (pip install \".[test]\")")
from onnx import AttributeProto, TensorProto, helper, numpy_helper  # noqa: E402

from lrpnb.onnx_import import OPSETS  # noqa: E402


def save(path, nodes, inits=(), input_shape=(1, 4, 4), opset=17):
    """Write a model reading x (N, *input_shape) and answering y; ``inits``
    are (name, array) pairs or TensorProtos; ``opset`` None declares none."""
    tensors = [init if isinstance(init, TensorProto) else numpy_helper.from_array(np.asarray(init[1]), init[0])
               for init in inits]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         ["N", *input_shape])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], tensors)
    model = helper.make_model(graph, opset_imports=[] if opset is None else [helper.make_opsetid("", opset)])
    path.write_bytes(model.SerializeToString())  # unchecked: onnx.checker would refuse some of these
    return str(path)


def node(op, inputs, outputs=("y",), **attributes):
    return helper.make_node(op, list(inputs), list(outputs), name="bad", **attributes)


def with_attribute(op, inputs, attribute, **attributes):
    made = node(op, inputs, **attributes)
    made.attribute.append(attribute)
    return made


FILTERS = ("w", np.ones((2, 1, 3, 3), np.float32))
SHORT = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2, 1, 3, 3], raw_data=b"\0" * 8)  # 8 bytes of 72
UNDEFINED = AttributeProto(name="axis")  # no type: onnx.helper cannot read its value

# (case, nodes, initializers, what the message says after the path)
CASES = [
    ("conv_one_input", [node("Conv", ["x"])], [FILTERS], r"node 'bad' \(Conv\): needs 2 named inputs"),
    ("conv_empty_input", [node("Conv", ["x", ""])], [FILTERS], r"node 'bad' \(Conv\): needs 2 named inputs"),
    ("add_empty_input", [node("Add", ["x", ""])], [], r"node 'bad' \(Add\): needs 2 named inputs \(or more\)"),
    ("batchnorm_three_inputs", [node("BatchNormalization", ["x", "s", "b"])], [("s", np.ones(1)), ("b", np.ones(1))],
     r"node 'bad' \(BatchNormalization\): needs 5 named inputs"),
    ("relu_no_input", [node("Relu", [])], [], r"node 'bad' \(Relu\): needs 1 named inputs"),
    ("maxpool_no_kernel", [node("MaxPool", ["x"])], [], r"node 'bad' \(MaxPool\): needs the attribute 'kernel_shape'"),
    ("lrn_no_size", [node("LRN", ["x"])], [], r"node 'bad' \(LRN\): needs the attribute 'size'"),
    ("concat_no_axis", [node("Concat", ["x", "x"])], [], r"node 'bad' \(Concat\): needs the attribute 'axis'"),
    ("short_raw_data", [node("Conv", ["x", "w"])], [SHORT], r"initializer tensor 'w' of dims \[2, 1, 3, 3\] is "
                                                           r"unreadable"),
    ("string_initializer", [node("Conv", ["x", "w"])], [helper.make_tensor("w", TensorProto.STRING, [1], [b"a"])],
     r"initializer tensor 'w' .* unreadable \(TypeError: object values\)"),
    ("conv_pads_of_two", [node("Conv", ["x", "w"], pads=[1, 1])], [FILTERS],
     r"node 'bad' \(Conv\): attribute pads must be 4 integers, got \[1, 1\]"),
    ("pool_pads_of_six", [node("AveragePool", ["x"], kernel_shape=[2, 2], pads=[0] * 6)], [],
     r"node 'bad' \(AveragePool\): attribute pads must be 4 integers"),
    ("pads_as_string", [node("MaxPool", ["x"], kernel_shape=[2, 2], pads="1111")], [],
     r"node 'bad' \(MaxPool\): attribute pads must be 4 integers, got b'1111'"),
    ("strides_as_float", [node("Conv", ["x", "w"], strides=1.5)], [FILTERS],
     r"node 'bad' \(Conv\): attribute strides must be 2 integers, got 1.5"),
    ("group_as_tensor", [node("Conv", ["x", "w"], group=numpy_helper.from_array(np.array(1)))], [FILTERS],
     r"node 'bad' \(Conv\): attribute group must be an integer, got data_type"),
    ("alpha_as_string", [node("LRN", ["x"], size=3, alpha="big")], [],
     r"node 'bad' \(LRN\): attribute alpha must be a finite number, got b'big'"),
    ("conv_nan_filters", [node("Conv", ["x", "w"])], [("w", np.full((2, 1, 3, 3), np.nan, np.float32))],
     r"node 'bad' \(Conv\): the filters \('w'\) must be finite numbers in 4 dimensions, got shape \(2, 1, 3, 3\) "
     r"with NaN or inf"),
    ("gemm_alpha_infinite", [node("Flatten", ["x"], ["f"]), node("Gemm", ["f", "v"], alpha=float("inf"))],
     [("v", np.ones((16, 2)))], r"node 'bad' \(Gemm\): attribute alpha must be a finite number, got inf"),
    ("kernel_of_three", [node("MaxPool", ["x"], kernel_shape=[2, 2, 2])], [],
     r"node 'bad' \(MaxPool\): attribute kernel_shape must be 2 integers"),
    ("auto_pad_as_int", [node("Conv", ["x", "w"], auto_pad=3)], [FILTERS],
     r"node 'bad' \(Conv\): attribute auto_pad must be a string, got 3"),
    ("untyped_attribute", [with_attribute("Softmax", ["x"], UNDEFINED)], [],
     r"node 'bad' \(Softmax\): attribute axis must be an integer, got None"),
    ("attribute_twice", [with_attribute("Flatten", ["x"], helper.make_attribute("axis", 1), axis=1)], [],
     r"node 'bad' \(Flatten\): has two attributes named 'axis'"),
    ("constant_without_tensor", [node("Constant", [], ["c"], value_float=1.0), node("Relu", ["x"])], [],
     r"node 'bad' \(Constant\): only Constant nodes with a 'value' tensor"),
    ("constant_short_tensor", [node("Constant", [], ["c"], value=SHORT), node("Relu", ["x"])], [],
     r"node 'bad' \(Constant\): tensor 'w' of dims \[2, 1, 3, 3\] is unreadable"),
    ("no_output", [helper.make_node("Relu", ["x"], [], name="bad")], [], r"node 'bad' \(Relu\): has no output"),
    ("reshape_float_shape", [node("Reshape", ["x", "s"])], [("s", np.array([0.0, -1.0], np.float32))],
     r"node 'bad' \(Reshape\): the shape must be integers, got shape 'float32 values'"),
    ("reshape_allowzero", [node("Reshape", ["x", "s"], allowzero=1)], [("s", np.array([0, 16]))],
     r"node 'bad' \(Reshape\): only a reshape that keeps the batch axis N first"),
    ("dropout_training", [node("Dropout", ["x", "r", "t"])], [("r", np.array(0.5, np.float32)), ("t", np.array(True))],
     r"node 'bad' \(Dropout\): training_mode is true; export the model in eval mode"),
    ("batchnorm_training", [node("BatchNormalization", ["x", "s", "s", "s", "s"], training_mode=1)],
     [("s", np.ones(1, np.float32))], r"node 'bad' \(BatchNormalization\): only the inference form"),
    ("gemm_vector_weights", [node("Flatten", ["x"], ["f"]), node("Gemm", ["f", "v"])], [("v", np.ones(16))],
     r"node 'bad' \(Gemm\): the weights \('v'\) must be finite numbers in 2 dimensions, got shape \(16,\)$"),
    ("newline_in_op_type", [node("Relu\nEvil", ["x"])], [], r"node 'bad' \(Relu\\nEvil\): unsupported operator"),
]


@pytest.mark.parametrize("case, nodes, inits, message", CASES, ids=[case[0] for case in CASES])
def test_malformed_nodes_are_value_errors_naming_the_file_and_node(tmp_path, case, nodes, inits, message):
    path = save(tmp_path / f"{case}.onnx", nodes, inits)
    with pytest.raises(ValueError, match=message) as raised:
        lrpnb.load(path)
    assert str(raised.value).startswith(f"{path}: ")


def test_tensor_names_defined_twice_are_refused(tmp_path):
    relu = [node("Relu", ["x"])]
    path = save(tmp_path / "inits.onnx", relu, [("w", np.ones(2)), ("w", np.zeros(2))])
    with pytest.raises(ValueError, match=r"inits.onnx: two initializers are named 'w'; tensor names must be unique"):
        lrpnb.load(path)
    path = save(tmp_path / "init.onnx", [node("Relu", ["x"], ["w"]), node("Relu", ["w"], ["y"])], [("w", np.ones(2))])
    with pytest.raises(ValueError, match=r"init.onnx: node 'bad' \(Relu\): redefines 'w', already an initializer"):
        lrpnb.load(path)
    path = save(tmp_path / "input.onnx", [node("Relu", ["x"], ["x"]), helper.make_node("Relu", ["x"], ["y"])])
    with pytest.raises(ValueError, match=r"input.onnx: node 'bad' \(Relu\): redefines 'x', already the model's input"):
        lrpnb.load(path)
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="first"), helper.make_node("Sigmoid", ["x"], ["y"],
                                                                                    name="second")]
    path = save(tmp_path / "outputs.onnx", nodes)
    with pytest.raises(ValueError, match=r"outputs.onnx: node 'second' \(Sigmoid\): redefines 'y', already an "
                                         r"output of node 'first'"):
        lrpnb.load(path)


def test_opsets_outside_those_read_are_refused(tmp_path):
    newest = min(OPSETS[1], onnx.defs.onnx_opset_version())
    reads = f"lrpnb reads opsets 7 to {newest} of ONNX's default domain"
    relu = [node("Relu", ["x"])]
    with pytest.raises(ValueError, match=rf"none.onnx: the model declares no opset of the default domain .*{reads}"):
        lrpnb.load(save(tmp_path / "none.onnx", relu, opset=None))
    with pytest.raises(ValueError, match=rf"old.onnx: opset 6 is too old; {reads}"):
        lrpnb.load(save(tmp_path / "old.onnx", relu, opset=6))
    with pytest.raises(ValueError, match=rf"new.onnx: opset {newest + 1} is too new; {reads}"):
        lrpnb.load(save(tmp_path / "new.onnx", relu, opset=newest + 1))
    for opset in (7, newest):  # the bounds are read
        assert isinstance(lrpnb.load(save(tmp_path / f"{opset}.onnx", relu, opset=opset)).layers[0], lrpnb.Rect)


def test_unsupported_operators_name_the_workaround(tmp_path):
    path = save(tmp_path / "maxed.onnx", [node("GlobalMaxPool", ["x"])])
    with pytest.raises(ValueError, match=r"maxed.onnx: node 'bad' \(GlobalMaxPool\): unsupported operator; lrpnb "
                                         r"imports Add, .*; to avoid it: use nn.MaxPool2d"):
        lrpnb.load(path)
    path = save(tmp_path / "mean.onnx", [node("ReduceMean", ["x"])])
    with pytest.raises(ValueError, match=r"nn.AdaptiveAvgPool2d\(1\)"):
        lrpnb.load(path)
    path = save(tmp_path / "elu.onnx", [node("Elu", ["x"])])  # no workaround: no hint
    with pytest.raises(ValueError, match=r"unsupported operator; lrpnb imports Add, .*, Where$"):
        lrpnb.load(path)
    relu = helper.make_node("Relu", ["x"], ["y"], name="bad", domain="com.example")
    with pytest.raises(ValueError, match=r"Where of ONNX's default domain \(this node's is 'com.example'\)$"):
        lrpnb.load(save(tmp_path / "domain.onnx", [relu]))


COMMAND_CASES = [(case, nodes, inits, 17) for case, nodes, inits, _ in CASES] + [
    ("duplicate", [node("Relu", ["x"], ["x"])], [], 17), ("no_opset", [node("Relu", ["x"])], [], None),
    ("old_opset", [node("Relu", ["x"])], [], 3), ("hint", [node("Shape", ["x"])], [], 17)]


@pytest.mark.parametrize("case, nodes, inits, opset", COMMAND_CASES, ids=[case[0] for case in COMMAND_CASES])
def test_info_reports_one_line_without_a_traceback(tmp_path, capsys, case, nodes, inits, opset):
    path = save(tmp_path / f"{case}.onnx", nodes, inits, opset=opset)
    assert main(["info", path]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"lrpnb info: error: {path}: ") and "Traceback" not in err


def small_model_bytes(tmp_path):
    rng = np.random.default_rng(5)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"], transB=1)]
    inits = [("w", rng.normal(size=(2, 1, 3, 3)).astype(np.float32)), ("b", np.zeros(2, np.float32)),
             ("fc", rng.normal(size=(3, 8)).astype(np.float32)), ("fcb", np.zeros(3, np.float32))]
    path = save(tmp_path / "valid.onnx", nodes, inits)
    assert lrpnb.load(path).forward(np.zeros((1, 4, 4, 1), np.float32)).shape == (1, 3)
    return (tmp_path / "valid.onnx").read_bytes()


def test_random_damage_is_a_value_error_or_a_model(tmp_path):
    valid = small_model_bytes(tmp_path)
    rng = np.random.default_rng(0)
    outcomes = {"loaded": 0, "refused": 0}
    for k in range(100):
        data = bytearray(valid)
        if k % 3 == 0:  # truncated
            data = data[:rng.integers(1, len(data))]
        else:  # 1 to 4 bytes replaced (and, every third, bits of one flipped)
            for at in rng.integers(0, len(data), size=rng.integers(1, 5)):
                data[at] = rng.integers(0, 256) if k % 3 == 1 else data[at] ^ (1 << rng.integers(0, 8))
        path = tmp_path / f"damaged_{k}.onnx"
        path.write_bytes(bytes(data))
        try:
            lrpnb.load(path)
            outcomes["loaded"] += 1
        except ValueError as error:
            assert str(error).startswith(f"{path}: "), (k, str(error))
            assert "\n" not in str(error), (k, str(error))
            outcomes["refused"] += 1
    assert outcomes["refused"] > 30  # damage is mostly caught, not silently read

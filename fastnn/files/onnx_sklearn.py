"""skl2onnx converters for fastnn.MLPClassifier and fastnn.MLPRegressor, so that
skl2onnx.convert_sklearn converts a Pipeline that holds one.

The probabilities (values) come from fastnn.to_onnx's graph of the estimator, copied node by node
into skl2onnx's container (so dropout, batch norm and every activation convert as they predict);
the labels are the argmax's class (Gather over classes_) or, multi-label, p > 0.5. skl2onnx adds
its ZipMap after a classifier unless options={id(clf): {"zipmap": False}} says otherwise.

Registered when fastnn.neural_network is imported and skl2onnx is already imported, and by
fastnn.register_skl2onnx() (which imports skl2onnx).
"""
import numpy as np


def _copy_graph(scope, operator, container, est):
    """Emit fastnn's graph of `est` reading operator.inputs[0]; returns the output's name, in the
    input's element type."""
    from onnx import TensorProto, helper, numpy_helper

    from .onnx_export import to_onnx
    proto = to_onnx(est)
    x = operator.inputs[0].full_name
    model_type = TensorProto.FLOAT if est.model_.dtype == np.float32 else TensorProto.DOUBLE
    in_type = operator.inputs[0].type.to_onnx_type().tensor_type.elem_type
    names = {}
    if in_type != model_type:
        names["X"] = scope.get_unique_variable_name("fastnn_input")
        container.add_node("Cast", x, names["X"], to=model_type, name=scope.get_unique_operator_name("Cast"))
    else:
        names["X"] = x

    def rename(name):
        if name not in names:
            names[name] = scope.get_unique_variable_name("fastnn_" + name.replace(".", "_"))
        return names[name]

    for init in proto.graph.initializer:
        value = numpy_helper.to_array(init)
        container.add_initializer(rename(init.name), init.data_type, list(value.shape), value.ravel().tolist())
    for node in proto.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        container.add_node(node.op_type, [rename(i) for i in node.input], [rename(o) for o in node.output],
                           name=scope.get_unique_operator_name(node.op_type), **attrs)
    out = rename(proto.graph.output[0].name)  # "probabilities" / "values"
    if in_type != model_type:
        cast = scope.get_unique_variable_name("fastnn_output")
        container.add_node("Cast", out, cast, to=in_type, name=scope.get_unique_operator_name("Cast"))
        out = cast
    return out


def convert_classifier(scope, operator, container):
    from onnx import TensorProto
    est = operator.raw_operator
    probs = _copy_graph(scope, operator, container, est)
    label, proba = operator.outputs[0].full_name, operator.outputs[1].full_name
    container.add_node("Identity", probs, proba, name=scope.get_unique_operator_name("Identity"))
    if est._label_binarizer.y_type_ == "multilabel-indicator":
        half = scope.get_unique_variable_name("half")
        container.add_initializer(half, operator.inputs[0].type.to_onnx_type().tensor_type.elem_type,
                                  [], [0.5])
        above = scope.get_unique_variable_name("above")
        container.add_node("Greater", [proba, half], above, name=scope.get_unique_operator_name("Greater"))
        container.add_node("Cast", above, label, to=TensorProto.INT64, name=scope.get_unique_operator_name("Cast"))
        return
    classes = est.classes_
    if classes.dtype.kind in "biuf":
        values, kind = classes.astype(np.int64).tolist(), TensorProto.INT64
    else:
        values, kind = [str(c).encode("utf-8") for c in classes], TensorProto.STRING
    table = scope.get_unique_variable_name("classes")
    container.add_initializer(table, kind, [len(values)], values)
    best = scope.get_unique_variable_name("argmax")
    container.add_node("ArgMax", proba, best, axis=1, keepdims=0, name=scope.get_unique_operator_name("ArgMax"))
    container.add_node("Gather", [table, best], label, axis=0, name=scope.get_unique_operator_name("Gather"))


def convert_regressor(scope, operator, container):
    est = operator.raw_operator
    values = _copy_graph(scope, operator, container, est)
    container.add_node("Identity", values, operator.outputs[0].full_name,
                       name=scope.get_unique_operator_name("Identity"))


def register():
    """Make skl2onnx convert fastnn's estimators (and pipelines holding them)."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (calculate_linear_classifier_output_shapes,
                                                  calculate_linear_regressor_output_shapes)

    from ..neural_network import MLPClassifier, MLPRegressor
    update_registered_converter(MLPClassifier, "FastnnMLPClassifier", calculate_linear_classifier_output_shapes,
                                convert_classifier, options={"zipmap": [True, False, "columns"],
                                                             "nocl": [True, False]})
    update_registered_converter(MLPRegressor, "FastnnMLPRegressor", calculate_linear_regressor_output_shapes,
                                convert_regressor)

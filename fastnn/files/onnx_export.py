"""ONNX export of a built model's inference graph, standard operators only (opset 17):

    Dense        Gemm (X @ kernel + bias)
    BatchNorm    folded into the Gemm before it (kernel * s, (bias - mean) * s + beta with
                 s = gamma / sqrt(var + eps), in float64); with no Gemm to fold into, Mul + Add
    Dropout      nothing (the identity at inference)
    activations  Relu, LeakyRelu, Sigmoid, Tanh, Softmax (last axis); identity: nothing
    output       for cross_entropy / binary_crossentropy the probabilities (predict_proba: the
                 loss's Softmax / Sigmoid link), for mse the values (predict)

Input "X" is (N, n_inputs), output "probabilities" or "values" is (N, n_outputs), N dynamic;
the element type is the model's dtype. The onnx package is needed only here, imported on call.
Other kinds join through EXPORTERS (class -> function(obj, onnx) -> ModelProto).
"""
import numpy as np

OPSET = 17
IR_VERSION = 8  # the IR of opset 17's onnx release: read by onnxruntime >= 1.12

_OPS = {"relu": ("Relu", {}), "sigmoid": ("Sigmoid", {}), "tanh": ("Tanh", {}),
        "softmax": ("Softmax", {"axis": -1}), "exp": ("Exp", {})}


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("fastnn.to_onnx needs the onnx package: pip install fastnn[onnx]") from None
    return onnx


class _Graph:
    """Nodes and initializers in the order they are added; `x` is the current tensor's name."""

    def __init__(self, onnx, dtype):
        self.onnx, self.dtype = onnx, np.dtype(dtype)
        self.nodes, self.initializers, self.x = [], [], "X"

    def constant(self, name, value):
        self.initializers.append(self.onnx.numpy_helper.from_array(
            np.ascontiguousarray(value, dtype=self.dtype), name))
        return name

    def node(self, op, inputs, name, **attrs):
        self.nodes.append(self.onnx.helper.make_node(op, [self.x] + inputs, [name], name=name, **attrs))
        self.x = name

    def activation(self, act, alpha, where):
        if act in (None, "identity"):
            return
        if act == "leaky_relu":
            self.node("LeakyRelu", [], f"{where}.leaky_relu", alpha=float(alpha))
        else:
            op, attrs = _OPS[act]
            self.node(op, [], f"{where}.{act}", **attrs)


class _Pending:
    """A Dense layer's affine map, held back (in float64) so a BatchNorm after it can fold in."""

    def __init__(self, where, kernel, bias):
        self.where = where
        self.kernel, self.bias = kernel.astype(np.float64), bias.astype(np.float64)

    def emit(self, g):
        g.node("Gemm", [g.constant(f"{self.where}.kernel", self.kernel),
                        g.constant(f"{self.where}.bias", self.bias)], f"{self.where}.gemm")


def _sequential(model, onnx):
    from .. import __version__
    from ..nn._layout import engine_activations

    with model._exclusive("export the model", from_callback_ok=True):
        b = model._require_built()
        plan, dtype, layers = b.plan, b.params.dtype, model.layers
        views = plan.views(b.params.copy(), b.state.copy())
    acts = engine_activations(plan.activations, plan.loss)  # the last link moves into the loss
    g = _Graph(onnx, dtype)
    pending = None
    for i, (ly, arrays, act) in enumerate(zip(layers, views, acts)):
        where = f"layers.{i}"
        if ly.kind == "dense":
            if pending is not None:
                pending.emit(g)
            pending = _Pending(where, arrays["kernel"], arrays["bias"])
        elif ly.kind == "batchnorm":
            scale = arrays["gamma"].astype(np.float64) / np.sqrt(arrays["running_var"].astype(np.float64) + ly.eps)
            shift = arrays["beta"].astype(np.float64) - arrays["running_mean"].astype(np.float64) * scale
            if pending is not None:
                pending.kernel, pending.bias = pending.kernel * scale, pending.bias * scale + shift
            else:
                g.node("Mul", [g.constant(f"{where}.scale", scale)], f"{where}.mul")
                g.node("Add", [g.constant(f"{where}.shift", shift)], f"{where}.add")
        elif ly.kind not in ("dropout", "activation"):
            raise TypeError(f"layer {i} ({type(ly).__name__}) has no ONNX export")
        if act not in (None, "identity") and pending is not None:
            pending.emit(g)
            pending = None
        g.activation(act, getattr(ly, "alpha", 0.01), where)
    if pending is not None:
        pending.emit(g)
    loss = plan.loss
    g.activation(loss.link, 0.0, "output")  # probabilities; exp for poisson; identity: nothing
    out = "probabilities" if loss.is_classifier else "values"
    g.nodes.append(onnx.helper.make_node("Identity", [g.x], [out], name=out))
    elem = onnx.TensorProto.FLOAT if dtype == np.float32 else onnx.TensorProto.DOUBLE
    graph = onnx.helper.make_graph(
        g.nodes, "fastnn.Sequential",
        [onnx.helper.make_tensor_value_info("X", elem, ["N", plan.n_inputs])],
        [onnx.helper.make_tensor_value_info(out, elem, ["N", plan.n_outputs])], g.initializers)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="fastnn", producer_version=__version__,
                                   doc_string=f"fastnn Sequential, loss {loss.name}: {out}")
    proto.ir_version = IR_VERSION
    onnx.helper.set_model_props(proto, {"fastnn.loss": loss.name, "fastnn.output": out})
    return proto


def _exporters():
    from ..nn.model import Sequential
    return {Sequential: _sequential, **EXPORTERS}


EXPORTERS = {}  # class -> function(obj, onnx) -> onnx.ModelProto, for kinds beyond Sequential


def to_onnx(model):
    """An onnx.ModelProto computing `model`'s predict_proba (classification losses) or predict
    (mse; one column per output, so (N, 1) where a regressor of one output predicts (N,), as
    skl2onnx writes scikit-learn's) for a batch of any size: a built Sequential, or a fitted fastnn MLPClassifier or
    MLPRegressor. Its input X and its output have the model's dtype (tensor(float) for float32,
    tensor(double) for float64: an estimator fitted on float64 X is a float64 model; feed it
    float64, or fit with dtype='float32'). Needs the onnx package (fastnn[onnx]); skl2onnx
    converts a Pipeline holding a fastnn estimator (fastnn.register_skl2onnx)."""
    onnx = _import_onnx()
    table = _exporters()
    for klass in type(model).__mro__:
        if klass in table:
            return table[klass](model, onnx)
    hint = (": convert a Pipeline with skl2onnx.convert_sklearn after fastnn.register_skl2onnx()"
            if hasattr(model, "steps") else "")
    raise TypeError(f"fastnn.to_onnx exports a built Sequential or a fitted fastnn MLPClassifier / "
                    f"MLPRegressor, not a {type(model).__name__}{hint}")

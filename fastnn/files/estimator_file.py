"""Model files of the scikit-learn estimators (fastnn.MLPClassifier, fastnn.MLPRegressor): the
Sequential they hold (fastnn/files/model_file.py's tensors and documents), plus

    tensors        best_weights.<i>   the best validation epoch's arrays (early_stopping), which a
                                      warm-started fit falls back to
    __metadata__   estimator          {"params": get_params(), "fitted": the fitted attributes}

Parameters are stored as JSON with tuples and dicts tagged, so that get_params() of the loaded
estimator equals the saved one's. Two kinds of values are not stored: `callbacks` (arbitrary
objects: saved as None) and a random_state given as a RandomState or Generator (saved as None).
classes_ keep their dtype (integers, floats, booleans, strings). Loading checks every value and
that the fitted attributes agree with the model (features, outputs, classes, output activation,
loss) before anything is built; nothing is unpickled or evaluated.
"""
import numbers

import numpy as np

from . import model_file

_TUPLE, _DICT = "__tuple__", "__dict__"
_Y_TYPES = ("binary", "multiclass", "multilabel-indicator")
_OUT = {"MLPClassifier": ("softmax", "logistic"), "MLPRegressor": ("identity", "exp")}
_LOSS = {"softmax": "sklearn_log_loss", "logistic": "sklearn_binary_log_loss",
         "identity": "sklearn_squared_error", "exp": "sklearn_poisson"}


# -- values <-> JSON ------------------------------------------------------------------------------
def _scalar(v, what):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    raise TypeError(f"{what} holds {v!r}, which a model file cannot store")


def _encode(v, what):
    if isinstance(v, tuple):
        return {_TUPLE: [_encode(x, what) for x in v]}
    if isinstance(v, list):
        return [_encode(x, what) for x in v]
    if isinstance(v, dict):
        return {_DICT: [[_scalar(k, what), _encode(x, what)] for k, x in v.items()]}
    return _scalar(v, what)


def _decode(v, what, depth=0):
    if depth > 8:
        raise ValueError(f"{what} is nested too deeply")
    if isinstance(v, list):
        return [_decode(x, what, depth + 1) for x in v]
    if isinstance(v, dict):
        if set(v) == {_TUPLE} and isinstance(v[_TUPLE], list):
            return tuple(_decode(x, what, depth + 1) for x in v[_TUPLE])
        if set(v) == {_DICT} and isinstance(v[_DICT], list):
            out = {}
            for pair in v[_DICT]:
                if not (isinstance(pair, list) and len(pair) == 2) or isinstance(pair[0], (list, dict)):
                    raise ValueError(f"{what} holds a malformed dict entry {pair!r}")
                out[pair[0]] = _decode(pair[1], what, depth + 1)
            return out
        raise ValueError(f"{what} holds an unknown object {sorted(v)!r}")
    return v


def _params(est):
    out = {}
    for name, value in est.get_params(deep=False).items():
        if name == "callbacks" or (name == "random_state" and value is not None
                                   and not isinstance(value, numbers.Integral)):
            value = None
        out[name] = _encode(value, f"parameter {name!r}")
    return out


def _labels(arr, what):
    """A 1-D array of labels as {"dtype", "values"}; strings, integers, floats or booleans."""
    arr = np.asarray(arr)
    if arr.ndim != 1:
        raise TypeError(f"{what} must be 1-D")
    if arr.dtype.kind in "biuf":
        return {"dtype": arr.dtype.str, "values": [_scalar(x, what) for x in arr.tolist()]}
    if arr.dtype.kind in "UO" and all(isinstance(x, str) for x in arr.tolist()):
        return {"dtype": "object" if arr.dtype.kind == "O" else "str", "values": arr.tolist()}
    raise TypeError(f"{what} of dtype {arr.dtype} cannot be saved in a model file: only strings, "
                    f"integers, floats and booleans")


def _labels_from(doc, what):
    _expect(doc, dict, what)
    if set(doc) != {"dtype", "values"}:
        raise ValueError(f"{what} has keys {sorted(doc)}")
    values = _expect(doc["values"], list, what)
    kind = doc["dtype"]
    if kind in ("str", "object"):
        if not all(isinstance(x, str) for x in values):
            raise ValueError(f"{what} must hold strings")
        return np.array(values, dtype=object if kind == "object" else str)
    try:
        dtype = np.dtype(kind)
    except (TypeError, ValueError):
        raise ValueError(f"{what} has an unknown dtype {kind!r}") from None
    if dtype.kind not in "biuf" or not all(isinstance(x, (int, float)) for x in values):
        raise ValueError(f"{what} must hold numbers of dtype {kind!r}")
    return np.array(values, dtype=dtype)


def _expect(value, kind, what):
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int, float))):
        raise ValueError(f"{what} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _number_list(v, what):
    if v is None:
        return None
    for x in _expect(v, list, what):
        _expect(x, (int, float), f"an entry of {what}")
    return [float(x) for x in v]


# -- encode / decode ------------------------------------------------------------------------------
_FITTED_NUMBERS = ("loss_", "best_loss_", "best_validation_score_")
_FITTED_INTS = ("n_iter_", "t_", "n_layers_", "n_outputs_", "n_features_in_", "_no_improvement_count")
_FITTED_LISTS = ("loss_curve_", "validation_scores_", "validation_loss_curve_")
_SCHEDULES = ("constant", "invscaling", "adaptive")  # scikit-learn's SGD learning_rate


def encode_estimator(est):
    from sklearn.utils.validation import check_is_fitted
    check_is_fitted(est)
    model = est.model_
    tensors, documents = model_file.encode_sequential(model)
    fitted = {name: _scalar(getattr(est, name, None), name) for name in _FITTED_NUMBERS + _FITTED_INTS}
    if fitted["_no_improvement_count"] is None:  # an lbfgs fit counts no epochs without improvement
        fitted["_no_improvement_count"] = 0
    fitted.update({name: _number_list(getattr(est, name, None), name) for name in _FITTED_LISTS})
    fitted["out_activation_"] = est.out_activation_
    # the stochastic solvers' current rate; lbfgs has none (its fits never read one)
    fitted["learning_rate"] = float(getattr(est, "_learning_rate", est.learning_rate_init))
    fitted["optimizer_ready"] = bool(getattr(est, "_optimizer_ready", False))
    # the schedule and power_t its SGD optimizer was made with (partial_fit keeps them, whatever
    # set_params said since); written since the sixteenth session, optional on reading
    policy = getattr(est, "_sgd_policy", None)
    fitted["sgd_policy"] = None if policy is None else {"learning_rate": str(policy[0]), "power_t": float(policy[1])}
    names = getattr(est, "feature_names_in_", None)
    fitted["feature_names_in_"] = None if names is None else _labels(names, "feature_names_in_")
    if hasattr(est, "classes_"):
        lb = est._label_binarizer
        fitted["classes_"] = _labels(est.classes_, "classes_")
        fitted["y_type_"] = lb.y_type_
    documents["estimator"] = {"params": _params(est), "fitted": fitted}
    return tensors, documents


def _decoder(cls):
    def decode(tensors, documents):
        doc = _expect(documents.pop("estimator", None), dict, "the estimator document")
        if set(doc) != {"params", "fitted"}:
            raise ValueError(f"the estimator document has keys {sorted(doc)}")
        model = model_file.decode_sequential(tensors, documents)
        if model.built and not model._compiled:  # written only for a Sequential built by hand
            raise ValueError("an estimator's model is compiled by its fit; this file says it was not")
        params = {k: _decode(v, f"parameter {k!r}") for k, v in _expect(doc["params"], dict, "params").items()}
        unknown = set(params) - set(cls._get_param_names())
        if unknown:
            raise ValueError(f"unknown {cls.__name__} parameters {sorted(unknown)}")
        est = cls(**params)
        _check_params(est)
        _restore_fitted(est, cls.__name__, model, _expect(doc["fitted"], dict, "fitted"))
        return est
    return decode


def _check_params(est):
    """The parameters as fit checks them (scikit-learn's constraints, then the per-layer lists),
    so that a bad value is refused here, naming the file, not by a later predict or fit. They are
    not compared with the network: set_params after a fit changes them and not the network, and
    such an estimator saves and loads as it pickles."""
    try:
        est._validate_params()
        hidden = est._hidden()
        est._activations(len(hidden))
        est._dropout_rates(len(hidden))
        est._callbacks()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the estimator's parameters: {exc}") from None


def _restore_fitted(est, kind, model, fitted):
    expected = set(_FITTED_NUMBERS + _FITTED_INTS + _FITTED_LISTS) | {
        "out_activation_", "learning_rate", "optimizer_ready", "feature_names_in_"}
    if kind == "MLPClassifier":
        expected |= {"classes_", "y_type_"}
    if not expected <= set(fitted) <= expected | {"sgd_policy"}:
        raise ValueError(f"the fitted attributes are {sorted(fitted)}, expected {sorted(expected)} "
                         f"and optionally 'sgd_policy'")
    policy = fitted.get("sgd_policy")
    if policy is not None:
        policy = _expect(policy, dict, "sgd_policy")
        if set(policy) != {"learning_rate", "power_t"} or policy["learning_rate"] not in _SCHEDULES:
            raise ValueError(f"sgd_policy must be {{'learning_rate': one of {list(_SCHEDULES)}, "
                             f"'power_t': a number}}, got {policy!r}")
        power_t = _expect(policy["power_t"], (int, float), "sgd_policy's power_t")
        if not (np.isfinite(power_t) and power_t >= 0):
            raise ValueError(f"sgd_policy's power_t must be a finite number >= 0, got {power_t!r}")
        policy = (policy["learning_rate"], float(power_t))
    if not model.built:
        raise ValueError("the estimator's model is not built")
    for name in _FITTED_INTS:
        v = _expect(fitted[name], int, name)
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    for name in _FITTED_NUMBERS:
        if fitted[name] is not None:
            _expect(fitted[name], (int, float), name)
    out = fitted["out_activation_"]
    if out not in _OUT[kind]:
        raise ValueError(f"out_activation_ {out!r} is not one of {_OUT[kind]}")
    if model.loss != _LOSS[out]:
        raise ValueError(f"the model's loss {model.loss!r} does not match out_activation_ {out!r}")
    if fitted["n_features_in_"] != model.n_inputs or fitted["n_outputs_"] != model.n_outputs:
        raise ValueError(f"n_features_in_ / n_outputs_ ({fitted['n_features_in_']}, "
                         f"{fitted['n_outputs_']}) disagree with the model ({model.n_inputs}, "
                         f"{model.n_outputs})")
    if fitted["n_layers_"] != len(model.coefs_) + 1:
        raise ValueError(f"n_layers_ {fitted['n_layers_']} disagrees with the model's "
                         f"{len(model.coefs_)} Dense layers")
    lr = _expect(fitted["learning_rate"], (int, float), "learning_rate")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"learning_rate must be a positive number, got {lr!r}")
    names = fitted["feature_names_in_"]
    if names is not None:
        names = _labels_from(names, "feature_names_in_")
        if names.dtype.kind != "O" or len(names) != model.n_inputs:
            raise ValueError("feature_names_in_ must be one string per feature")
    if kind == "MLPClassifier":
        from sklearn.preprocessing import LabelBinarizer
        classes = _labels_from(fitted["classes_"], "classes_")
        y_type = fitted["y_type_"]
        if y_type not in _Y_TYPES:
            raise ValueError(f"y_type_ {y_type!r} is not one of {_Y_TYPES}")
        n_out = model.n_outputs
        ok = {"binary": n_out == 1 and len(classes) in (1, 2) and out == "logistic",
              "multiclass": n_out == len(classes) >= 3 and out == "softmax",
              "multilabel-indicator": n_out == len(classes) and out == "logistic"}[y_type]
        if not ok or len(set(classes.tolist())) != len(classes):
            raise ValueError(f"classes_ ({len(classes)}, {y_type}) disagree with the model's "
                             f"{n_out} outputs and out_activation_ {out!r}")
        lb = LabelBinarizer()
        lb.classes_, lb.y_type_, lb.sparse_input_ = classes, y_type, False
        est._label_binarizer, est.classes_ = lb, classes
    est.model_ = model
    for name in _FITTED_NUMBERS + _FITTED_INTS:
        setattr(est, name, fitted[name])
    for name in _FITTED_LISTS:
        setattr(est, name, _number_list(fitted[name], name))
    if names is not None:
        est.feature_names_in_ = names
    est.out_activation_ = out
    est._learning_rate = float(lr)
    est._optimizer_ready = _expect(fitted["optimizer_ready"], bool, "optimizer_ready")
    if policy is not None:
        est._sgd_policy = policy
    est._best_weights = model.get_weights()
    est.history_ = model.history


def _to_onnx(est, onnx):
    """The model's graph; a binary classifier's one probability p becomes [1 - p, p], as its
    predict_proba."""
    from sklearn.utils.validation import check_is_fitted
    from . import onnx_export
    check_is_fitted(est)
    proto = onnx_export._sequential(est.model_, onnx)
    if getattr(est, "classes_", None) is None or est.n_outputs_ != 1:
        return proto
    g = proto.graph
    out = g.node[-1]  # Identity(p) -> "probabilities"
    p = out.input[0]
    one = onnx.numpy_helper.from_array(np.ones((1, 1), dtype=est.model_.dtype), "output.one")
    g.initializer.append(one)
    g.node.remove(out)
    g.node.extend([onnx.helper.make_node("Sub", ["output.one", p], ["output.negative"], name="output.negative"),
                   onnx.helper.make_node("Concat", ["output.negative", p], ["probabilities"],
                                         name="probabilities", axis=1)])
    g.output[0].type.tensor_type.shape.dim[1].dim_value = 2
    return proto


def register():
    from ..neural_network import MLPClassifier, MLPRegressor
    from . import onnx_export
    for cls in (MLPClassifier, MLPRegressor):
        model_file.register_kind(cls.__name__, cls, encode_estimator, _decoder(cls))
        onnx_export.EXPORTERS[cls] = _to_onnx


for _name in ("MLPClassifier", "MLPRegressor"):
    model_file.LAZY_KINDS[_name] = "fastnn.neural_network"

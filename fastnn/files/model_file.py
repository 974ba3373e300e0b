"""fastnn model files: safetensors files (fastnn/files/safetensors.py) whose `__metadata__` says
what they hold.

    tensors        params    the flat parameter buffer (weights first; see fastnn/nn/_layout.py)
                   slots     the optimizer's state, (n_slots, n_params): velocity, Adam's m and v...
                   state     the running statistics (batch norm's mean and variance)
                   counters  int64 [optimizer steps taken, samples seen]
    __metadata__   format "fastnn.model", format_version, fastnn_version, kind, and one JSON
                   document per key of the kind:
                   config          Sequential.get_config()
                   compile_config  Sequential.get_compile_config() (optimizer with its schedule, loss)
                   training        n_inputs, lr_scale, epochs_trained, schedule_state (the state of
                                   the callback the Adaptive schedule runs); compiled: false for a
                                   model built but never compiled (absent otherwise)
                   history         the last fit's History
                   arrays          where each layer's arrays lie in the buffers (for other readers)

An unbuilt model has no tensors. Loading checks the format version, then builds the model from
its configs through the registry of fastnn classes (fastnn/nn/_config.py: a name that is not a
fastnn class is an error; nothing is unpickled or evaluated), then binds the buffers after the
same checks a pickle's go through (Sequential._restore_buffers). Any problem is a ValueError that
names the file.

Kinds. save and load dispatch on a registry of model kinds, so a new front end (the
scikit-learn estimators) adds its own without touching this file:

    register_kind("MLPClassifier", MLPClassifier, encode, decode)

where encode(obj) returns (tensors {name: array}, {key: JSON-able value}) and
decode(tensors, documents) rebuilds the object, raising ValueError (or TypeError, KeyError) on
anything it cannot accept. encode_sequential / decode_sequential serve a kind that holds a
Sequential. A kind whose module is not always imported is listed in LAZY_KINDS (kind name ->
module), which load imports when it meets the name.
"""
import importlib
import json
import numbers
import os

import numpy as np

from . import safetensors

FORMAT = "fastnn.model"
FORMAT_VERSION = 1
MAX_DOCUMENT_DEPTH = 64
_RESERVED = ("format", "format_version", "fastnn_version", "kind")


class ModelKind:
    __slots__ = ("name", "cls", "encode", "decode")

    def __init__(self, name, cls, encode, decode):
        self.name, self.cls, self.encode, self.decode = name, cls, encode, decode


KINDS = {}       # kind name -> ModelKind
LAZY_KINDS = {}  # kind name -> module that registers it when imported


def register_kind(name, cls, encode, decode):
    """Make objects of `cls` savable as kind `name` (see the module docstring)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a model kind needs a non-empty name, got {name!r}")
    KINDS[name] = ModelKind(name, cls, encode, decode)


def _kind_of(obj):
    for klass in type(obj).__mro__:
        for kind in KINDS.values():
            if kind.cls is klass:
                return kind
    raise TypeError(f"fastnn cannot save a {type(obj).__name__}; savable kinds: {sorted(KINDS)}")


def _version():
    from .. import __version__
    return __version__


# -- save and load ---------------------------------------------------------------------------------
def save(obj, path, extra=None, **options):
    """Write `obj` (a Sequential, or any registered kind) to `path` atomically. `options` go to
    the kind's encode (Sequential: pending_epoch, see encode_sequential). `extra` {key: JSON-able
    value} adds documents of the caller's own beside the kind's (the command line stores what it
    knows of the data there); loading ignores them, load(path, with_metadata=True) returns them."""
    kind = _kind_of(obj)
    tensors, documents = kind.encode(obj, **options)
    for key in extra or {}:
        if key in documents:
            raise ValueError(f"metadata key {key!r} is used by the {kind.name} itself")
    documents = {**documents, **(extra or {})}
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                "fastnn_version": _version(), "kind": kind.name}
    for key, doc in documents.items():
        if key in metadata:
            raise ValueError(f"metadata key {key!r} is reserved")
        metadata[key] = json.dumps(doc, separators=(",", ":"))  # floats as repr: exact round trips
    safetensors.save_file(tensors, path, metadata)


def load(path, with_metadata=False):
    """The object saved at `path`: a Sequential (or another registered kind), ready to predict
    and to train on from where it stopped. with_metadata=True returns (object, metadata):
    format_version (int), fastnn_version, kind, and every JSON document of the file, parsed
    (the kind's and any `extra` ones save wrote)."""
    where = os.fspath(path)
    tensors, metadata = safetensors.read_file(path)

    def bad(problem):
        return ValueError(f"{where}: {problem}")

    if metadata.get("format") != FORMAT:
        raise bad("not a fastnn model file (a safetensors file without fastnn's metadata)")
    version = metadata.get("format_version", "")
    if not (version.isascii() and version.isdigit() and len(version) <= 9):
        raise bad(f"unreadable model format version {version!r}")
    if int(version) > FORMAT_VERSION:
        raise bad(f"written in fastnn model format version {int(version)} (by fastnn "
                  f"{metadata.get('fastnn_version', '?')}), but this fastnn ({_version()}) reads "
                  f"format versions up to {FORMAT_VERSION}: upgrade fastnn to load it")
    name = metadata.get("kind")
    if name not in KINDS and name in LAZY_KINDS:
        importlib.import_module(LAZY_KINDS[name])
    if name not in KINDS:
        raise bad(f"unknown model kind {name!r} (known: {sorted(KINDS)})")
    documents = {}
    for key, text in metadata.items():
        if key not in _RESERVED:
            try:
                documents[key] = safetensors.parse_json(text, MAX_DOCUMENT_DEPTH, f"metadata {key!r}",
                                                        allow_nan=True)
            except ValueError as exc:
                raise bad(str(exc)) from None
    try:
        obj = KINDS[name].decode(tensors, documents)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise bad(f"cannot rebuild the {name}: {exc}") from None
    if not with_metadata:
        return obj
    return obj, {"format_version": int(version), "fastnn_version": metadata.get("fastnn_version"),
                 "kind": name, **documents}


# -- Sequential --------------------------------------------------------------------------------------
_TENSORS = ("params", "slots", "state", "counters")


def _real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _history_document(h, pending_epoch=None):
    """The History as plain data (its numeric entries); `pending_epoch` (epoch, logs) is added
    when the History has not recorded it yet (a callback that runs before it saves)."""
    if h is None:
        return None
    history = {k: [float(x) for x in v] for k, v in h.history.items()
               if isinstance(k, str) and all(_real(x) for x in v)}
    epochs = [int(e) for e in h.epoch]
    if pending_epoch is not None and epochs[-1:] != [pending_epoch[0]]:
        epoch, logs = pending_epoch
        for k, v in logs.items():  # as History.on_epoch_end records them
            if isinstance(k, str) and _real(v) and (k in history or k not in h.history):
                history.setdefault(k, []).append(float(v))
        epochs.append(int(epoch))
    return {"history": history, "epoch": epochs, "interrupted": bool(h.interrupted),
            "stopped_early": bool(h.stopped_early), "terminated_on_nan": bool(h.terminated_on_nan)}


def _expect(value, kind, what):
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ValueError(f"{what} must be a {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _history_from(doc):
    from ..nn.callbacks import History
    if doc is None:
        return None
    _expect(doc, dict, "history")
    if set(doc) != {"history", "epoch", "interrupted", "stopped_early", "terminated_on_nan"}:
        raise ValueError(f"history has keys {sorted(doc)}")
    h = History()
    for k, values in _expect(doc["history"], dict, "history['history']").items():
        for v in _expect(values, list, f"history[{k!r}]"):
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ValueError(f"history[{k!r}] holds {v!r}, not a number")
        h.history[k] = [float(v) for v in values]
    for e in _expect(doc["epoch"], list, "history epochs"):
        _expect(e, int, "an epoch number")
    h.epoch = list(doc["epoch"])
    for flag in ("interrupted", "stopped_early", "terminated_on_nan"):
        setattr(h, flag, _expect(doc[flag], bool, f"history {flag}"))
    return h


def _check_classes(config, compile_config):
    """Name the first class a config asks for that is not a fastnn layer / optimizer."""
    from ..nn._config import _REGISTRY
    from ..nn.layers import Layer
    from ..nn.optimizers import Optimizer

    layers = _expect(_expect(config, dict, "config").get("layers"), list, "config['layers']")
    for i, entry in enumerate(layers):
        name = entry.get("class_name") if isinstance(entry, dict) else None
        cls = _REGISTRY.get(name) if isinstance(name, str) else None
        if cls is None or not issubclass(cls, Layer):
            raise ValueError(f"layer {i} names {name!r}, which is not a fastnn layer class")
    if compile_config is not None:
        opt = _expect(compile_config, dict, "compile_config").get("optimizer")
        name = opt.get("class_name") if isinstance(opt, dict) else None
        cls = _REGISTRY.get(name) if isinstance(name, str) else None
        if cls is None or not issubclass(cls, Optimizer):
            raise ValueError(f"the optimizer names {name!r}, which is not a fastnn optimizer class")


def encode_sequential(model, pending_epoch=None):
    """(tensors, documents) of a Sequential, taken under its lock (so also from a callback that
    fit runs; pending_epoch=(epoch, logs) adds the epoch ending now to the history)."""
    with model._exclusive("save the model", from_callback_ok=True):
        model._check_arrays("save the model")
        b = model._built
        cb = model._schedule_callback
        documents = {
            "config": model.get_config(),
            "compile_config": model.get_compile_config(),
            "training": {"n_inputs": None if b is None else b.plan.n_inputs,
                         "lr_scale": model.lr_scale, "epochs_trained": model.epochs_trained,
                         "schedule_state": None if cb is None else cb.get_state(),
                         # written only for a model built but never compiled (its compile_config
                         # is build's default, which predicts but must not train)
                         **({} if model._compiled or model.optimizer is None else {"compiled": False})},
            "history": _history_document(model.history, pending_epoch),
        }
        if b is None:
            return {}, documents
        documents["arrays"] = {
            f"layers.{i}.{name}": {"tensor": buf, "offset": off, "shape": list(shape)}
            for i, arrays in enumerate(b.plan.arrays) for name, buf, off, shape in arrays}
        tensors = {"params": b.params.copy(), "slots": b.slots.reshape(b.n_slots, b.plan.n_params).copy(),
                   "state": b.state.copy(), "counters": b.counters.copy()}
        return tensors, documents


def decode_sequential(tensors, documents):
    """The Sequential of encode_sequential's output, every value checked."""
    from ..nn.model import Sequential

    config, compile_config = documents.get("config"), documents.get("compile_config")
    _check_classes(config, compile_config)
    model = Sequential.from_config(config)
    if compile_config is not None:
        if set(compile_config) != {"optimizer", "loss"}:
            raise ValueError(f"compile_config has keys {sorted(compile_config)}")
        model.compile_from_config(compile_config)
    training = _expect(documents.get("training"), dict, "training")
    if set(training) - {"compiled"} != {"n_inputs", "lr_scale", "epochs_trained", "schedule_state"}:
        raise ValueError(f"training has keys {sorted(training)}")
    if "compiled" in training:
        if training["compiled"] is not False or compile_config is None:
            raise ValueError("training's 'compiled' is written only as false, beside a compile_config")
        model._compiled = False
    model.lr_scale = training["lr_scale"]  # the setters check the values
    model.epochs_trained = training["epochs_trained"]
    state = training["schedule_state"]
    if (state is None) != (model._schedule_callback is None):
        raise ValueError("the schedule's state does not match the schedule")
    if state is not None:
        model._schedule_callback.set_state(state)
    model.history = _history_from(documents.get("history"))
    if not tensors and training["n_inputs"] is None:
        return model
    if set(tensors) != set(_TENSORS) or training["n_inputs"] is None:
        raise ValueError(f"a built model has the tensors {list(_TENSORS)} and n_inputs; this file "
                         f"has {sorted(tensors)} and n_inputs {training['n_inputs']!r}")
    if model.optimizer is None:
        raise ValueError("a built model needs a compile_config")
    slots = tensors["slots"]
    if slots.ndim != 2 or slots.shape[0] != model.optimizer.n_slots:
        raise ValueError(f"slots has shape {slots.shape}; {type(model.optimizer).__name__} keeps "
                         f"{model.optimizer.n_slots} slot(s) per parameter")
    model._restore_buffers(n_inputs=training["n_inputs"], params=tensors["params"],
                           slots=np.ascontiguousarray(slots.reshape(-1)), state=tensors["state"],
                           counters=tensors["counters"])
    return model


def _register_sequential():
    from ..nn.model import Sequential
    register_kind("Sequential", Sequential, encode_sequential, decode_sequential)


_register_sequential()

"""The model API: Sequential stacks of layers trained by the engine, one compiled call per epoch.

    model = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dropout(0.2),
                               fastnn.Dense(10)])
    model.compile(optimizer=fastnn.Adam(1e-3), loss="cross_entropy")
    history = model.fit(X, y, epochs=3, batch_size=128, validation_data=(Xt, yt),
                        callbacks=[fastnn.EarlyStopping(patience=2)])
    model.predict(Xt), model.predict_proba(Xt), model.evaluate(Xt, yt)

The model owns its layers, one flat parameter buffer (weights first, then biases and batch-norm
parameters), the optimizer's state mirroring it, the batch-norm running statistics and two
counters (optimizer steps, samples seen); layers' arrays are views of the buffers. The layout
lives in fastnn/nn/_layout.py, training in fastnn/nn/_training.py; this class validates, holds the
state and delegates.

Thread safety: every method that changes the model (build, compile, fit, partial_fit,
set_weights) holds the model's lock, and raises at once when another thread holds it. A fit's
callbacks may read the model, predict, evaluate and set its weights, but not build, compile or
fit it again. Inference runs on engines of its own and may run beside a fit in another thread.

A model pickles and deep-copies with its weights, optimizer state, counters, running statistics,
learning-rate scale, schedule state and history; the copy predicts bit-identically and trains on
exactly the trajectory the original would have taken.
"""
import contextlib
import copy
import os
import threading
import weakref

import numpy as np

from .. import _engine as _backend
from .._engine import losses as _losses
from .._engine.validation import (as_dtype, check_labels, check_matrix, check_positive_int,
                                  check_sample_weight, check_targets, narrow, refuse_overflow,
                                  reject_unsupported)
from . import _inference, _training
from ._config import (Configurable, InstanceOf, Integral, Interval, Real, checked, deserialize,
                      serialize)
from ._layout import following_activation, make_plan
from .layers import Layer
from .optimizers import Optimizer, get_optimizer
from .progress import progress_model


_LIVE_MODELS = weakref.WeakSet()
MAX_COUNTER = 2 ** 53  # a model's counters (optimizer steps, samples seen) as files and pickles give them


def _check_metrics(metrics):
    """compile's metrics: what fit and evaluate report already (the loss; accuracy for the
    classification losses), so that Keras's metrics=['accuracy'] is taken; anything else is
    refused by name rather than ignored."""
    if metrics is None:
        return
    if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)):
        raise TypeError(f"metrics must be a list of names, such as ['accuracy'], not {metrics!r}")
    for m in metrics:
        if not isinstance(m, str) or m not in ("accuracy", "acc", "loss"):
            raise ValueError(f"metric {m!r} is not available: fit and evaluate report the loss, and the "
                             f"accuracy for the classification losses (metrics=['accuracy'])")


class _DenseArrays(list):
    """Sequential.coefs_ / intercepts_: the Dense layers' kernels (biases) as views of the model's
    buffer. Assigning an item or a slice sets those arrays of the model (checked as set_weights
    checks them, all or nothing), as an assignment into scikit-learn's coefs_ changes its model;
    the list's length is the model's, so what would change it is refused. It pickles and copies
    as a plain list of arrays. The items are views, so a swap must copy or go in one assignment:
    c[0:2] = c[1::-1] swaps, where c[0], c[1] = c[1], c[0] writes the first into the second."""

    _FIXED = "has one array per Dense layer: assign an item (coefs_[i] = W) or the whole list"

    def __init__(self, model, name):
        model._require_built()
        super().__init__(ly.kernel if name == "kernel" else ly.bias
                         for ly in model._layers if name in ly.array_names())
        self._model, self._name = model, name

    def __setitem__(self, index, value):
        n = len(self)
        if isinstance(index, slice):
            positions = range(n)[index]
            try:
                values = list(value)
            except TypeError:
                raise TypeError(f"can only assign an iterable of arrays to a slice of {self._what()}") from None
            if len(values) != len(positions):
                raise ValueError(f"{self._what()} {self._FIXED}: a slice of {len(positions)} "
                                 f"given {len(values)} arrays")
        else:
            positions, values = [range(n)[index]], [value]  # IndexError / TypeError as a list's
        self._model._set_some(self._name, dict(zip(positions, values)))
        for j in positions:  # the views themselves, as a fresh coefs_ would hold them
            list.__setitem__(self, j, _DenseArrays(self._model, self._name)[j])

    def _what(self):
        return "coefs_" if self._name == "kernel" else "intercepts_"

    def _refuse(self, *args, **kwargs):
        raise TypeError(f"{self._what()} {self._FIXED}")

    __delitem__ = append = extend = insert = pop = remove = clear = sort = reverse = _refuse
    __iadd__ = __imul__ = _refuse

    def __reduce__(self):
        return list, (list(self),)

    def __copy__(self):
        return list(self)

    def __deepcopy__(self, memo):
        return [copy.deepcopy(w, memo) for w in self]


def _free_models_of_vanished_threads():
    """In a child after os.fork only the forking thread exists. A model that another thread of the
    parent was training keeps its buffers as they were at the fork (possibly part-way through a
    step) and gets a new lock: that thread, which held the old one, will never release it here. A
    model the forking thread holds itself (a fork from one of its fit's callbacks) stays held: that
    fit goes on in the child too, and releases it."""
    for model in list(_LIVE_MODELS):
        lock = model.__dict__.get("_lock")
        if lock is None or lock._is_owned():
            continue
        if lock.acquire(blocking=False):
            lock.release()
        else:
            model._lock, model._busy = threading.RLock(), None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_free_models_of_vanished_threads)


def _describe(a):
    if isinstance(a, np.ndarray):
        flags = "" if a.flags.c_contiguous and a.flags.writeable else (
            " (" + ", ".join(f for f, ok in (("not C-contiguous", a.flags.c_contiguous),
                                              ("read-only", a.flags.writeable)) if not ok) + ")")
        return f"a {a.dtype} array of shape {a.shape}{flags}"
    return f"a {type(a).__name__}"


def _dtype(v):
    from ._config import _INVALID
    try:
        return as_dtype(v)
    except TypeError:
        return _INVALID


def _schedule_callback_from(optimizer, pickled):
    """The callback a pickled model's schedule runs with (Adaptive's plateau rule), made afresh
    from the optimizer and given the pickled one's state, which must be that kind of callback with
    that configuration: a pickle cannot hand fit any other object to call."""
    want = None if optimizer is None else optimizer.schedule.plateau_callback()
    if want is None or pickled is None:
        if pickled is not None:
            raise ValueError("the pickled model has a schedule callback its optimizer's schedule does not make")
        return want
    if type(pickled) is not type(want) or not isinstance(getattr(pickled, "__dict__", None), dict) or \
            {k: pickled.__dict__.get(k) for k in want.get_config()} != want.get_config():
        raise ValueError("the pickled model's schedule callback is not the one its optimizer's schedule makes")
    want.set_state({k: pickled.__dict__.get(k) for k in want.get_state()})
    return want


class _LrScale:
    _parameter_constraints = {"lr_scale": [Interval(Real, 0, None, closed="neither")]}
    config_name = "Sequential"  # the class errors name


class _Epochs:
    _parameter_constraints = {"epochs_trained": [Interval(Integral, 0, 2 ** 62)],
                              "step": [Interval(Integral, 0, 2 ** 63 - 1)]}
    config_name = "Sequential"  # the class errors name


class Sequential(Configurable):
    """A stack of layers. Build happens on the first fit (or `build(n_inputs)`)."""

    _parameter_constraints = {
        "dtype": [InstanceOf(np.dtype, convert=_dtype, name="'float32' or 'float64'")],
        "seed": [Interval(Integral, 0, 2 ** 64 - 1)],
    }

    def __init__(self, layers=(), dtype="float32", seed=0):
        self._lock = threading.RLock()
        self._busy = None
        _LIVE_MODELS.add(self)
        params = checked(type(self), {"dtype": dtype, "seed": seed})
        self._dtype, self._seed = params["dtype"], params["seed"]
        self._layers = []
        self._optimizer = None
        self._loss = None
        self._compiled = False  # compile() called (build alone compiles a default, for inference)
        self._built = None
        self._schedule_callback = None
        self._lr_scale = 1.0
        self._epochs_trained = 0
        self.history = None
        self.stop_training = False
        if isinstance(layers, Layer) or not hasattr(layers, "__iter__"):
            raise TypeError(f"layers must be a list of fastnn layers, not {layers!r}")
        for ly in layers:
            self.add(ly)

    # -- the lock ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _exclusive(self, what, training=False, from_callback_ok=False):
        # another thread's short call (a copy, set_weights, compile: no user code runs in them)
        # is waited for: two threads pickling one model at once (dask sending a result twice)
        # must both succeed. A training call (_busy, set once it holds the lock) is refused.
        acquired = self._lock.acquire(blocking=False)
        while not acquired and self._busy is None:
            acquired = self._lock.acquire(timeout=0.005)
        if not acquired:
            if progress_model() is self:
                raise RuntimeError(f"cannot {what} from on_epoch_progress: it runs in a thread of its "
                                   f"own while the epoch trains this model; do it in on_epoch_end")
            raise RuntimeError(f"cannot {what}: this model is being trained in another thread")
        try:
            if self._busy and not from_callback_ok:
                raise RuntimeError(f"cannot {what} while this model's {self._busy} is running "
                                   f"(called from one of its callbacks?)")
            if training:
                self._busy = what
            try:
                yield
            finally:
                if training:
                    self._busy = None
        finally:
            self._lock.release()

    # -- construction ----------------------------------------------------------------------------
    def add(self, layer):
        """Append a layer. A layer belongs to one model: one already in a model is rejected."""
        with self._exclusive("add a layer"):
            if not isinstance(layer, Layer) or type(layer).__dict__.get("_abstract"):
                raise TypeError(f"expected a fastnn layer (Dense, Activation, Dropout, BatchNorm), got {layer!r}")
            if self._built is not None:
                raise RuntimeError("cannot add layers to a built model")
            owner = layer._owner() if layer._owner is not None else None
            if owner is not None:
                where = "this model" if owner is self else "another model"
                raise ValueError(f"this {type(layer).__name__} layer already belongs to {where}: a layer "
                                 f"belongs to one model; make a new one, or add copy.deepcopy(layer)")
            layer._owner = weakref.ref(self)
            self._layers.append(layer)

    def compile(self, optimizer="adam", loss=None, metrics=None, **optimizer_kwargs):
        """Choose the optimizer (name or Optimizer object) and the loss: 'cross_entropy' (integer
        labels, softmax), 'binary_crossentropy' (0/1 targets, sigmoid; binary or multi-label),
        'mse' (regression), or one of their aliases. loss=None infers it from the last activation
        (softmax -> cross entropy, sigmoid -> binary cross entropy, else mse). metrics: None, or
        Keras's ['accuracy'], which fit and evaluate report anyway for the classification losses.
        Resets the optimizer state and the learning-rate scale."""
        _check_metrics(metrics)
        with self._exclusive("compile"):
            record = self._loss_record(loss)
            if metrics and {"accuracy", "acc"} & set(metrics) and not record.is_classifier:
                raise ValueError(f"metric 'accuracy' needs a classification loss; {record.name} reports "
                                 f"its loss only")
            self._compile(get_optimizer(optimizer, **optimizer_kwargs), loss)
            self._compiled = True
        return self

    def _swap_optimizer(self, optimizer):
        """Use `optimizer`, of the current one's class, keeping the optimizer state, the counters
        and the rate scale, which compile resets: the drop-in estimators' partial_fit reads alpha
        afresh for each call while its optimizer lives on, as scikit-learn's does."""
        with self._exclusive("compile"):
            if self._optimizer is None or type(optimizer) is not type(self._optimizer):
                raise ValueError(f"cannot swap {self._optimizer!r} for {optimizer!r}: compile() makes a "
                                 f"new optimizer")
            self._optimizer = optimizer

    def _loss_record(self, loss):
        """The loss named, or the one the last activation suggests (loss=None)."""
        return _losses.for_link(self._last_activation()) if loss is None else _losses.get(loss)

    def _compile(self, optimizer, loss):
        record = self._loss_record(loss)
        b = self._built
        if b is not None and b.plan.n_outputs < record.min_outputs:
            raise ValueError(f"{record.name} needs at least {record.min_outputs} outputs; this model "
                             f"has {b.plan.n_outputs} (use binary_crossentropy for one)")
        if b is not None:  # same buffers, a plan for the new loss, fresh optimizer state
            plan = b.plan.with_loss(record)
            slots = np.zeros(optimizer.n_slots * plan.n_params, self.dtype)
            self._built = _training.Built(plan, self.dtype, b.params, slots, b.state,
                                          np.zeros_like(b.counters), optimizer.n_slots)
        self._optimizer, self._loss = optimizer, record
        self._schedule_callback = optimizer.schedule.plateau_callback()
        self._lr_scale = 1.0

    def _last_activation(self):
        for ly in reversed(self._layers):
            if ly.activation is not None:
                return ly.activation
        return None

    def build(self, n_inputs):
        """Lay out the buffers for `n_inputs` features and initialise the weights. On a model
        already built for n_inputs it does nothing; for another width it raises."""
        with self._exclusive("build"):
            self._build(n_inputs)
        return self

    def _build(self, n_inputs):
        n_inputs = check_positive_int(n_inputs, "n_inputs")
        if self._built is not None:
            if n_inputs == self._built.plan.n_inputs:
                return
            raise ValueError(f"this model is built for {self._built.plan.n_inputs} inputs, not "
                             f"{n_inputs}; make a new model (Sequential.from_config(model.get_config()))")
        if not any(ly.starts_linear_map for ly in self._layers):
            raise ValueError("the model needs at least one Dense layer")
        if self._optimizer is None:
            self._compile(get_optimizer("adam"), None)
        plan = make_plan(self._layers, n_inputs, self._loss, self.seed)
        if plan.n_outputs < self._loss.min_outputs:
            raise ValueError(f"{self._loss.name} needs at least {self._loss.min_outputs} outputs; this "
                             f"model has {plan.n_outputs} (use binary_crossentropy for one)")
        built = _training.Built.allocate(plan, self.dtype, self.optimizer.n_slots)
        views = plan.views(built.params, built.state)
        rng = np.random.default_rng(self.seed)
        for i, ly in enumerate(self._layers):
            ly.initialize(views[i], rng, following_activation(self._layers, i))
        self._bind(built)

    def _bind(self, built):
        for ly, (n_in, n_out), views in zip(self._layers, built.plan.widths,
                                           built.plan.views(built.params, built.state)):
            ly._bind(n_in, n_out, views)
        self._built = built

    # -- state ---------------------------------------------------------------------------------
    layers = property(lambda self: list(self._layers),
                      doc="The layers (a copy of the list: add layers with add()).")
    optimizer = property(lambda self: self._optimizer, doc="The optimizer chosen by compile().")
    dtype = property(lambda self: self._dtype)
    seed = property(lambda self: self._seed)

    @property
    def lr_scale(self):
        """Multiplies the optimizer's learning rate (whatever its schedule); ReduceLROnPlateau and
        the Adaptive schedule lower it; compile() resets it to 1."""
        return self._lr_scale

    @lr_scale.setter
    def lr_scale(self, value):
        self._lr_scale = checked(_LrScale, {"lr_scale": value})["lr_scale"]

    @property
    def epochs_trained(self):
        """Epochs trained so far: the per-epoch schedules and the shuffle's stream follow it."""
        return self._epochs_trained

    @epochs_trained.setter
    def epochs_trained(self, value):
        self._epochs_trained = checked(_Epochs, {"epochs_trained": value})["epochs_trained"]

    @property
    def built(self):
        return self._built is not None

    @property
    def loss(self):
        """The loss's canonical name ('cross_entropy', 'binary_crossentropy', 'mse'), or None."""
        return None if self._loss is None else self._loss.name

    def _require_built(self):
        b = self._built
        if b is None:
            raise RuntimeError("the model is not built yet: call fit() or build(n_inputs) first")
        return b

    n_inputs = property(lambda self: self._built.plan.n_inputs if self._built else None)
    n_outputs = property(lambda self: self._built.plan.n_outputs if self._built else None)
    n_params = property(lambda self: self._require_built().plan.n_params)
    n_decay = property(lambda self: self._require_built().plan.n_decay)
    params = property(lambda self: self._require_built().params,
                      doc="The flat parameter buffer (weights first); layers' arrays are views of it.")
    slots = property(lambda self: self._require_built().slots, doc="Optimizer state, n_slots x n_params.")
    state = property(lambda self: self._require_built().state, doc="Running statistics.")
    @property
    def counters(self):
        """[optimizer steps taken, samples seen] (read-only: the schedules and the random streams
        follow them)."""
        view = self._require_built().counters.view()
        view.flags.writeable = False
        return view

    @property
    def coefs_(self):
        """Dense kernels, (n_in, n_out) each: views of the parameter buffer, in a list whose item
        assignment (`model.coefs_[0] = W`) sets that kernel, as scikit-learn's list does."""
        return _DenseArrays(self, "kernel")

    @property
    def intercepts_(self):
        """Dense biases, (n_out,) each: views of the parameter buffer, in a list whose item
        assignment sets that bias."""
        return _DenseArrays(self, "bias")

    def get_weights(self):
        """Copies of every array, layer by layer: kernel, bias (Dense); gamma, beta,
        running_mean, running_var (BatchNorm)."""
        b = self._require_built()
        views = b.plan.views(b.params, b.state)
        return [views[i][name].copy() for i, ly in enumerate(self._layers) for name in ly.array_names()]

    def set_weights(self, weights):
        """Set every array (the order of get_weights); all or nothing."""
        weights = list(weights)
        with self._exclusive("set the weights", from_callback_ok=True):
            self._require_built()
            targets = [(i, name) for i, ly in enumerate(self._layers) for name in ly.array_names()]
            if len(weights) != len(targets):
                raise ValueError(f"expected {len(targets)} arrays, got {len(weights)}")
            self._assign(zip(targets, weights))

    def _set_some(self, name, updates):
        """Set the arrays `name` (kernel or bias) of the Dense layers numbered by `updates`'
        keys, counting only layers that have one (coefs_ and intercepts_ item assignment)."""
        with self._exclusive("set the weights", from_callback_ok=True):
            self._require_built()
            owners = [i for i, ly in enumerate(self._layers) if name in ly.array_names()]
            self._assign(((owners[j], name), w) for j, w in updates.items())

    def _assign(self, pairs):
        """Check every ((layer, name), array) pair, then write them all (or none); the caller
        holds the model."""
        b = self._built
        views = b.plan.views(b.params, b.state)
        checked = {}
        for (i, name), w in pairs:
            label = f"{type(self._layers[i]).__name__}.{name} (layer {i})"
            if isinstance(w, np.ma.MaskedArray):  # its hidden values would be written
                raise TypeError(f"{label}: a masked array is not taken; pass its .filled(value)")
            reject_unsupported(w, label)  # a sparse matrix
            try:
                w = np.asarray(w)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{label} must be a numeric array: {exc}") from None
            if w.dtype.kind not in "biuf":
                raise TypeError(f"{label} must hold real numbers, not {w.dtype}")
            source, w = w, narrow(w, self.dtype)
            if w.shape != views[i][name].shape:
                raise ValueError(f"{label} has shape {views[i][name].shape}, got {w.shape}")
            if not np.isfinite(w).all():
                refuse_overflow(source, w, label)
                raise ValueError(f"{label} contains NaN or infinite values")
            checked.setdefault(i, {})[name] = w
        for i, arrays in checked.items():
            self._layers[i].check_arrays(arrays)
            for name, w in arrays.items():  # a view of these buffers (coefs_[1]) would change
                if np.may_share_memory(w, b.params) or np.may_share_memory(w, b.state):  # under
                    arrays[name] = w.copy()  # an earlier write: c[0:2] = c[1::-1] swaps them
        for i, arrays in checked.items():  # all or nothing
            for name, w in arrays.items():
                views[i][name][...] = w

    def count_params(self):
        return self._require_built().plan.n_params

    def summary(self, print_fn=print):
        """A table of layers, output widths and parameter counts (printed and returned)."""
        b = self._built
        rows = [("Layer", "Output", "Params")]
        total = 0
        for i, ly in enumerate(self._layers):
            if b is not None:
                n_in, n_out = b.plan.widths[i]
                n = sum(int(np.prod(s)) for _, s, _ in ly.parameters(n_in, n_out))
                total += n
                rows.append((repr(ly), f"(None, {n_out})", str(n)))
            else:
                rows.append((repr(ly), "?", "?"))
        w = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:>{w[2]}}" for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.append("-" * len(lines[0]))
        lines.append(f"Total params: {total if b is not None else '? (not built)'}  "
                     f"dtype: {self.dtype}  loss: {self.loss}  optimizer: {self.optimizer!r}  "
                     f"backend: {_backend.get_backend()}")
        text = "\n".join(lines)
        if print_fn:
            print_fn(text)
        return text

    def __repr__(self):
        return f"Sequential({self._layers!r})"

    # -- configs and copies ---------------------------------------------------------------------
    def get_config(self):
        """The architecture: {'layers': [{'class_name', 'config'}, ...], 'dtype', 'seed'}."""
        return {"layers": serialize(self._layers), "dtype": self.dtype.name, "seed": self.seed}

    def get_compile_config(self):
        """{'optimizer': {'class_name', 'config'}, 'loss': name}, or None before compile."""
        if self.optimizer is None:
            return None
        return {"optimizer": serialize(self.optimizer), "loss": self.loss}

    def compile_from_config(self, config):
        return self.compile(deserialize(config["optimizer"]), loss=config["loss"])

    def __copy__(self):
        """A model's copy is always a full copy (a layer belongs to one model)."""
        return copy.deepcopy(self)

    def __deepcopy__(self, memo):
        """The pickle path, minus one copy: __getstate__ already copies the buffers, so only the
        rest of the state (layers, optimizer, history) is deep-copied. dask-ml's incremental
        searches deep-copy the model before every partial_fit."""
        new = type(self).__new__(type(self))
        memo[id(self)] = new  # before the layers, which look their owner up in memo
        state = self.__getstate__()
        built = state.pop("_built")
        state = copy.deepcopy(state, memo)
        state["_built"] = built
        new.__setstate__(state)
        return new

    def _check_arrays(self, what):
        """The layers' own checks of their arrays, as loading a file or a pickle makes them: a value
        written through a layer's array view that no model can be restored with (a negative
        running variance) is refused before it goes into a file or a copy."""
        b = self._built
        if b is None:
            return
        for i, (ly, arrays) in enumerate(zip(self._layers, b.plan.views(b.params, b.state))):
            try:
                ly.check_arrays(arrays)
            except ValueError as exc:
                raise ValueError(f"cannot {what}: layer {i}: {exc} (written through the layer's array "
                                 f"view?): a model could not be restored from it") from None

    def __getstate__(self):
        with self._exclusive("copy the model", from_callback_ok=True):
            self._check_arrays("copy the model")
            b = self._built
            state = {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_busy", "_built")}
            state["_loss"] = None if self._loss is None else self._loss.name
            state["_built"] = None if b is None else {
                "n_inputs": b.plan.n_inputs, "params": b.params.copy(), "slots": b.slots.copy(),
                "state": b.state.copy(), "counters": b.counters.copy()}
            return state

    def __setstate__(self, state):
        if "_lock" in self.__dict__:  # pickle and copy call it on a new, empty object only
            raise RuntimeError("__setstate__ restores a pickled model into a new, empty object; this "
                               "model is already set up (and may be training): unpickle the state, "
                               "or use copy.deepcopy, to get a model from it")
        if not isinstance(state, dict):
            raise TypeError(f"cannot restore a Sequential from {type(state).__name__}")
        state = dict(state)
        built = state.pop("_built", None)
        loss = state.pop("_loss", None)
        params = checked(type(self), {"dtype": state.get("_dtype"), "seed": state.get("_seed")})
        state["_dtype"], state["_seed"] = params["dtype"], params["seed"]
        state["_lr_scale"] = checked(_LrScale, {"lr_scale": state.get("_lr_scale", 1.0)})["lr_scale"]
        state["_epochs_trained"] = checked(_Epochs, {"epochs_trained": state.get("_epochs_trained", 0)})[
            "epochs_trained"]
        layers = state.get("_layers", [])
        if not isinstance(layers, list) or not all(isinstance(ly, Layer) for ly in layers) or \
                len(set(map(id, layers))) != len(layers):
            raise ValueError("the pickled model's layers are not a list of distinct fastnn layers")
        if not (state.get("_optimizer") is None or isinstance(state["_optimizer"], Optimizer)):
            raise ValueError("the pickled model's optimizer is not a fastnn optimizer")
        # pickles of models from before _compiled: one with an optimizer counts as compiled
        state["_compiled"] = state.get("_compiled", state.get("_optimizer") is not None) is True and \
            state.get("_optimizer") is not None
        if (state.get("_optimizer") is None) != (loss is None):
            raise ValueError("the pickled model has an optimizer without a loss, or a loss without an "
                             "optimizer: compile sets both")
        state["_schedule_callback"] = _schedule_callback_from(state.get("_optimizer"),
                                                              state.get("_schedule_callback"))
        self.__dict__.update(state)
        self._lock, self._busy, self._built = threading.RLock(), None, None
        _LIVE_MODELS.add(self)
        self._loss = None if loss is None else _losses.get(loss)
        for ly in self._layers:
            ly._owner = weakref.ref(self)
        if built is not None:
            self._restore_buffers(**built)

    def _restore_buffers(self, n_inputs, params, slots, state, counters):
        """Bind saved buffers (a pickle's or a model file's) to this unbuilt, compiled model, after
        checking them against the layout its layers give for n_inputs."""
        if self._optimizer is None or self._loss is None:
            raise ValueError("a model with trained buffers must have an optimizer and a loss")
        n_inputs = check_positive_int(n_inputs, "n_inputs")
        if not isinstance(params, np.ndarray) or n_inputs > params.size:  # a Dense layer reads them all
            raise ValueError(f"{n_inputs} inputs cannot fit the model's parameter buffer")
        # at most 2^53 (steps, samples: no training reaches it), so that training on cannot carry
        # them past int64's range (a file's 2^63 - 3 wrapped negative in an epoch, and the file
        # saved then did not load)
        if (not isinstance(counters, np.ndarray) or counters.dtype != np.int64 or (counters < 0).any()
                or (counters > MAX_COUNTER).any()):
            raise ValueError("the model's counters must be non-negative int64 values of at most 2**53")
        plan = make_plan(self._layers, n_inputs, self._loss, self._seed)
        built = _training.Built(plan, self._dtype, params, slots, state, counters, self._optimizer.n_slots)
        views = plan.views(built.params, built.state)
        for ly, arrays in zip(self._layers, views):
            ly.check_arrays(arrays)
        self._bind(built)

    def _require_compiled(self, call):
        """Training needs the loss and optimizer the user chose, as in Keras: build() alone compiles
        a default (Adam, the loss the last activation suggests), which predict may use, but which
        would train class labels as regression targets behind a softmax-less output."""
        if not self._compiled:
            raise RuntimeError(f"compile the model before {call}: model.compile(optimizer, loss), e.g. "
                               f"model.compile('adam', loss='cross_entropy') for integer class labels, "
                               f"loss='mse' for real targets")

    # -- files (fastnn/files) -----------------------------------------------------------------------
    def save(self, path):
        """Write the model to a safetensors file at `path`, atomically: weights, optimizer state,
        running statistics, counters, configs, learning-rate scale and history. fastnn.load(path)
        gives back a model that predicts bit-identically and trains on as this one would."""
        from ..files import model_file
        model_file.save(self, path)

    # -- data ----------------------------------------------------------------------------------------
    def _check_xy(self, X, y, sample_weight, name="X", build=False, x_finite=False):
        """Validated (X, T, labels, sample_weight); build=True first builds an unbuilt model for
        X's width (fit, partial_fit), so X is checked once; x_finite: see check_matrix."""
        b = self._built
        X = check_matrix(X, name, self.dtype, n_cols=None if b is None else b.plan.n_inputs, finite=x_finite)
        if b is None:
            if not build:
                self._require_built()
            self._build(X.shape[1])
        b = self._built
        n, loss, n_out = X.shape[0], b.plan.loss, b.plan.n_outputs
        yname = "y" if name == "X" else "y_val"
        if y is None:
            raise ValueError(f"{yname} is None: training and evaluation need targets")
        if loss.targets == "labels":
            labels, T = check_labels(y, n, n_out, name=yname), None
        else:
            labels, T = None, check_targets(y, n, n_out, self.dtype, name=yname)
            if loss.targets == "probabilities" and ((T < 0) | (T > 1)).any():
                raise ValueError(f"{loss.name} targets must lie in [0, 1]")
        return X, T, labels, check_sample_weight(sample_weight, n, self.dtype)

    # -- training ------------------------------------------------------------------------------------
    def fit(self, X, y, epochs=1, batch_size=32, validation_data=None, validation_split=0.0,
            shuffle=True, verbose=0, sample_weight=None, callbacks=None):
        """Train for `epochs` epochs of mini-batches (the last batch may be smaller); each epoch is
        one call into the engine; compile() first. Returns the History. `callbacks` are fastnn.Callback objects
        (fastnn.nn.callbacks). validation_split holds out the last fraction of the samples, as
        Keras does. shuffle: True draws each epoch's order from the model's seed; False keeps the
        rows' order; a callable order(epoch) gives it (an array of n row indices, each in [0, n):
        how fastnn's scikit-learn estimators replay scikit-learn's shuffle). verbose: 0 silent, 1 live progress bar (one line per epoch when the output is
        not a terminal), 2 one line per epoch. Ctrl-C stops between two batches: the model keeps
        every completed step and KeyboardInterrupt propagates."""
        return self._fit(X, y, epochs, batch_size, validation_data, validation_split, shuffle, verbose,
                         sample_weight, callbacks)

    def _fit(self, X, y, epochs=1, batch_size=32, validation_data=None, validation_split=0.0,
             shuffle=True, verbose=0, sample_weight=None, callbacks=None, x_finite=False):
        """fit; x_finite=True: the caller found X finite (a fit of 60,000 MNIST rows checked them
        twice: 4-5 ms of a 3-epoch drop-in fit of 240 ms, 2-core Zen 5 VM)."""
        with self._exclusive("fit", training=True):
            self._require_compiled("fit")
            return _training.fit(self, X, y, epochs, batch_size, validation_data, validation_split,
                                 shuffle, verbose, sample_weight, callbacks, x_finite)

    def partial_fit(self, X, y, sample_weight=None, batch_size=None):
        """One pass over the given rows, in order, in mini-batches of `batch_size` (scikit-learn's
        partial_fit); batch_size=None takes the whole input as one batch: one optimizer step (Keras's
        train_on_batch). Builds the model on first use. Returns the mean loss of the pass. If a
        batch diverges, the batches before it stay applied and NonFiniteError says how many."""
        return self._partial_fit(X, y, sample_weight, batch_size, "partial_fit")

    def train_on_batch(self, X, y, sample_weight=None):
        """One optimizer step on the whole batch; returns its loss."""
        return self._partial_fit(X, y, sample_weight, None, "train_on_batch")

    def _partial_fit(self, X, y, sample_weight, batch_size, call):
        with self._exclusive(call, training=True):
            self._require_compiled(call)
            return _training.partial_fit(self, X, y, sample_weight, batch_size, call)

    # -- inference (fastnn/nn/_inference.py) ------------------------------------------------------
    def _outputs(self, X, link, b=None):
        return _inference.outputs(b or self._require_built(), X, link)

    def forward(self, X):
        """Raw outputs of the last layer (logits for the classification losses), inference mode."""
        return _inference.outputs(self._built or self._require_built(), X, False)

    __call__ = forward

    def predict_proba(self, X):
        """Class probabilities: softmax (cross entropy) or sigmoid (binary cross entropy) of the
        outputs."""
        if self._loss is not None and not self._loss.is_classifier:
            raise AttributeError(f"predict_proba is for classification losses; this model uses {self.loss}")
        return _inference.outputs(self._built or self._require_built(), X, True)

    def predict(self, X):
        """Class labels (argmax for cross entropy; sigmoid > 0.5, i.e. output > 0, per output for
        binary cross entropy) or, for mse, the predicted values."""
        b = self._require_built()
        return b.plan.loss.predict(self._outputs(X, False, b))

    def evaluate(self, X, y, sample_weight=None):
        """{'loss': ..., 'accuracy': ...} (accuracy for classification losses), inference mode."""
        self._require_built()
        return self._evaluate(*self._check_xy(X, y, sample_weight))

    def _evaluate(self, X, T, labels, sw):
        return _inference.evaluate(self._require_built(), X, T, labels, sw)

    def score(self, X, y, sample_weight=None):
        """Accuracy for classification, R^2 for regression (scikit-learn's convention)."""
        if self._loss is not None and not self._loss.is_classifier:
            X, T, _, sw = self._check_xy(X, y, sample_weight)
            b = self._require_built()
            return _inference.r2(T, b.plan.loss.predict(self._outputs(X, False, b)), sw)
        return self.evaluate(X, y, sample_weight)["accuracy"]

    def gradient(self, X, y, sample_weight=None, step=None):
        """(loss, flat gradient) of one batch in training mode, nothing updated: for checks."""
        b = self._require_built()
        X, T, labels, sw = self._check_xy(X, y, sample_weight)
        step = None if step is None else checked(_Epochs, {"step": step})["step"]
        return _inference.gradient(b, X, T, labels, sw, step)

    def whole_gradient(self, X, y, sample_weight=None):
        """For full-batch optimizers (scipy's L-BFGS-B, which sets `params` between calls): a
        function f(grads) -> loss that gives the loss of all of X, y at the current parameters
        and writes its gradient (n_params, the model's dtype) into grads; no penalty, nothing
        updated. The engine computes it in chunks (fastnn/nn/_inference.py: whole_gradient); the
        inputs are checked once, here. The objective must be deterministic and a sum over rows,
        so dropout and batch norm (chunk statistics, running statistics left alone) are refused."""
        for i, ly in enumerate(self._layers):
            if ly.kind == "batchnorm" or (ly.kind == "dropout" and ly.rate > 0):
                raise ValueError(f"whole_gradient needs a deterministic objective that sums over rows; "
                                 f"layer {i} ({ly!r}) makes it random or batch-dependent")
        X, T, labels, sw = self._check_xy(X, y, sample_weight)
        plan, loss = self._require_built().plan, self._loss  # what X and y were checked for

        def loss_and_gradient(grads):
            built = self._require_built()
            if built.plan is not plan or self._loss is not loss:
                raise RuntimeError("this gradient function was made for the model as it was compiled "
                                   "and built then; it has been compiled or built again since (its "
                                   "targets were checked for the old loss): call whole_gradient again")
            if (not isinstance(grads, np.ndarray) or grads.dtype != built.params.dtype
                    or grads.shape != built.params.shape or not grads.flags.c_contiguous
                    or not grads.flags.writeable):
                raise ValueError(f"grads must be a writeable C-contiguous {built.params.dtype} array of "
                                 f"shape {built.params.shape} (the model's parameters), got "
                                 f"{_describe(grads)}")
            return _inference.whole_gradient(built, grads, X, T, labels, sw)
        return loss_and_gradient

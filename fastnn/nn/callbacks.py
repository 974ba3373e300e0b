"""Callbacks, in Keras's shape: fit(..., callbacks=[...]) calls

    on_train_begin(logs)            once, before the first epoch
    on_epoch_begin(epoch, logs)     before each epoch
    on_epoch_progress(epoch, logs)  about ten times a second WHILE an epoch runs, from a helper
                                    thread (the epoch itself is one compiled call): logs holds
                                    'batch', 'batches', 'samples', 'loss', 'accuracy', 'elapsed'
    on_epoch_end(epoch, logs)       after each epoch: 'loss', 'accuracy', 'lr', 'time', 'val_*'
    on_train_end(logs)              once, also when training stops early or is interrupted

`self.model` is the model being trained and `self.params` holds 'epochs', 'steps' (batches per
epoch), 'samples', 'batch_size' and 'verbose'. Setting `model.stop_training = True` ends fit after
the current epoch. From a callback a model may be read, evaluated, predicted with and have its
weights set; building, compiling or fitting it again raises (the running fit owns it).

History (always added; fit returns it), EarlyStopping, ReduceLROnPlateau, TerminateOnNaN and
ModelCheckpoint ship here; ProgressBar and EpochLogger (verbose=1 / 2) live in fastnn.nn.progress.
"""
import contextlib
import math
import os
import string
import threading
import warnings


from ._config import (_INVALID, Boolean, Configurable, InstanceOf, Integral, Interval, NoneOk, Options,
                      Real, checked, validate)


class Callback(Configurable):
    """Base class: every hook does nothing."""

    _abstract = True

    model = None
    params = None

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_epoch_progress(self, epoch, logs):
        pass

    def get_state(self):
        """What the callback has learnt while training (not its config), as plain numbers: a
        model file stores it for the callback a model owns (the Adaptive schedule's)."""
        return {}

    def set_state(self, state):
        """Restore get_state()'s values, checked as the constructor checks its arguments."""
        if state != {}:
            raise ValueError(f"{type(self).__name__} keeps no state, got {state!r}")

    def __getstate__(self):  # a callback travels without the model it was last attached to
        state = dict(self.__dict__)
        state.pop("model", None)
        return state

    def __deepcopy__(self, memo):
        import copy
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__getstate__(), memo))
        return new


_IN_USE = {}  # id -> (callback, the thread whose fit holds it), for every running fit
_IN_USE_LOCK = threading.Lock()


def _forget_claims_after_fork():
    """In a child after os.fork only the forking thread exists: the fits of other threads, which
    held their callbacks, never end there (and the lock may have been held at the fork)."""
    global _IN_USE_LOCK
    _IN_USE_LOCK = threading.Lock()
    me = threading.get_ident()  # a fit of the forking thread (forked from its callback) goes on
    for key in [k for k, (_, owner) in _IN_USE.items() if owner != me]:
        del _IN_USE[key]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_claims_after_fork)


def check_free(callbacks):
    """RuntimeError when a running fit holds one of `callbacks` (before a caller changes anything
    on the way to a fit that in_use would refuse)."""
    with _IN_USE_LOCK:
        _refuse_held(callbacks)


def _refuse_held(callbacks):
    """The refusal of check_free and in_use; the caller holds _IN_USE_LOCK."""
    for cb in callbacks:
        if id(cb) in _IN_USE:
            raise RuntimeError(f"this {type(cb).__name__} is in use by another running fit: a callback "
                               f"keeps one fit's state; give each fit its own (copy.deepcopy(callback))")


@contextlib.contextmanager
def in_use(callbacks):
    """Hold `callbacks` for one fit: a callback keeps that fit's state (its model, the best value,
    the wait count), so a fit running in another thread (two estimators given one EarlyStopping)
    may not share it."""
    mine = {id(cb): cb for cb in callbacks}
    with _IN_USE_LOCK:
        _refuse_held(mine.values())
        _IN_USE.update({key: (cb, threading.get_ident()) for key, cb in mine.items()})
    try:
        yield
    finally:
        with _IN_USE_LOCK:
            for key in mine:
                _IN_USE.pop(key, None)


class CallbackList:
    """Calls each hook of every callback in order."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)
        self.wants_progress = any(type(cb).on_epoch_progress is not Callback.on_epoch_progress
                                  for cb in self.callbacks)

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args):
            for cb in self.callbacks:
                getattr(cb, hook)(*args)
        return call


class History(Callback):
    """What fit recorded: `history` maps 'loss', 'accuracy', 'val_loss', 'val_accuracy', 'lr',
    'time' to one value per epoch; `epoch` lists the epoch numbers. `stopped_early` is True when a
    callback stopped training, `interrupted` when Ctrl-C did, `terminated_on_nan` when
    TerminateOnNaN did. plot() draws the curves (fastnn.plot_history)."""

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.interrupted = False
        self.stopped_early = False
        self.terminated_on_nan = False

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def __getitem__(self, key):
        return self.history[key]

    def plot(self, path=None, ax=None, **kwargs):
        """Loss and accuracy curves per epoch, training and validation; returns the matplotlib
        Figure. Needs matplotlib (pip install fastnn[plot]); see fastnn.plot_history."""
        from ..plots import plot_history
        return plot_history(self, path=path, ax=ax, **kwargs)

    def __repr__(self):
        last = {k: round(v[-1], 5) for k, v in self.history.items()} if self.epoch else {}
        return f"History(epochs={len(self.epoch)}, last={last})"


# what an epoch's logs may hold: val_r2 is an estimator's validation score (MLPRegressor with
# early_stopping), as val_accuracy is an MLPClassifier's
MONITORS = ("loss", "accuracy", "val_loss", "val_accuracy", "val_r2")


def _mode_sign(mode, monitor):
    """+1 when larger is better, -1 when smaller is."""
    if mode == "auto":
        mode = "max" if "acc" in monitor or "r2" in monitor else "min"
    return 1.0 if mode == "max" else -1.0


class _Monitor(Callback):
    """Shared by EarlyStopping and ReduceLROnPlateau: reads `monitor` from the epoch's logs."""

    _abstract = True

    def _value(self, logs):
        v = (logs or {}).get(self.monitor)
        if v is None:
            if not getattr(self, "_warned", False):
                self._warned = True
                warnings.warn(f"{type(self).__name__}: '{self.monitor}' is not among the logs "
                              f"({sorted(logs or {})}); it does nothing", RuntimeWarning, stacklevel=3)
            return None
        return float(v)


class EarlyStopping(_Monitor):
    """Stop training when `monitor` has not improved by more than `min_delta` for `patience`
    epochs (Keras's rule). With restore_best_weights the model ends training with the weights
    (parameters and running statistics) of its best epoch, whether training stopped early or
    ran all its epochs."""

    _parameter_constraints = {
        "monitor": [Options(MONITORS)],
        "min_delta": [Interval(Real, 0, None)], "patience": [Interval(Integral, 0, None)],
        "mode": [Options(("auto", "min", "max"))], "baseline": [NoneOk(), Interval(Real, None, None)],
        "restore_best_weights": [Boolean()], "start_from_epoch": [Interval(Integral, 0, None)],
        "verbose": [Interval(Integral, 0, 2)]}

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0, verbose=0):
        validate(self, dict(monitor=monitor, min_delta=min_delta, patience=patience, mode=mode,
                            baseline=baseline, restore_best_weights=restore_best_weights,
                            start_from_epoch=start_from_epoch, verbose=verbose))
        self.stopped_epoch = None
        self.best_epoch = None

    def on_train_begin(self, logs=None):
        self._sign = _mode_sign(self.mode, self.monitor)
        self.best, self.wait, self._seen = -math.inf, 0, 0
        self.stopped_epoch = self.best_epoch = None
        self._best_weights = None

    def _improves(self, score, reference):
        return score - self.min_delta > reference

    def on_epoch_end(self, epoch, logs=None):
        v = self._value(logs)
        self._seen += 1
        if v is None or self._seen <= self.start_from_epoch:
            return
        score = self._sign * v
        self.wait += 1
        if self._improves(score, self.best):
            self.best, self.best_epoch = score, epoch
            if self.restore_best_weights:
                self._best_weights = self.model.get_weights()
            if self.baseline is None or self._improves(score, self._sign * self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and self._seen > 1:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)
        if self.verbose and self.stopped_epoch is not None:
            print(f"epoch {self.stopped_epoch + 1}: early stopping"
                  + (f" (best epoch {self.best_epoch + 1})" if self.best_epoch is not None else ""))


class _MinusInf:
    """-inf, the best score before the first epoch."""

    def convert(self, v):
        return -math.inf if isinstance(v, float) and v == -math.inf else _INVALID

    def __str__(self):
        return "-inf"


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by `factor` when `monitor` has failed to beat its best value so
    far by more than `min_delta` for `patience` consecutive epochs (then wait `cooldown` epochs
    before counting again: the `cooldown` epochs after a reduction never count, as in PyTorch,
    where Keras already counts the last of them); never below `min_lr`. The best value is the best
    ever seen (Keras and PyTorch move it only on an improvement of more than min_delta), as in
    scikit-learn's 'adaptive' rule, which is ReduceLROnPlateau(monitor='loss', factor=1/5,
    min_delta=tol, patience=n_iter_no_change + 1). The rate changes through model.lr_scale, which
    multiplies whatever schedule the optimizer has."""

    _parameter_constraints = {
        "monitor": [Options(MONITORS)],
        "factor": [Interval(Real, 0, 1, closed="neither")], "patience": [Interval(Integral, 0, None)],
        "verbose": [Interval(Integral, 0, 2)], "mode": [Options(("auto", "min", "max"))],
        "min_delta": [Interval(Real, 0, None)], "cooldown": [Interval(Integral, 0, None)],
        "min_lr": [Interval(Real, 0, None)]}

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        validate(self, dict(monitor=monitor, factor=factor, patience=patience, verbose=verbose,
                            mode=mode, min_delta=min_delta, cooldown=cooldown, min_lr=min_lr))
        self.best, self.wait, self.cooldown_left = -math.inf, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        v = self._value(logs)
        if v is None:
            return
        score = _mode_sign(self.mode, self.monitor) * v
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        elif score > self.best + self.min_delta:
            self.wait = 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                base = self.model.optimizer.lr
                scale = max(self.model.lr_scale * self.factor, self.min_lr / base)
                if scale < self.model.lr_scale:
                    self.model.lr_scale = scale
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau: learning rate scaled to {scale:.4g}")
                self.wait, self.cooldown_left = 0, self.cooldown
        self.best = max(self.best, score)

    _state_constraints = {"best": [Interval(Real, None, None), _MinusInf()],
                          "wait": [Interval(Integral, 0, None)],
                          "cooldown_left": [Interval(Integral, 0, None)]}

    def get_state(self):
        return {"best": self.best, "wait": self.wait, "cooldown_left": self.cooldown_left}

    def set_state(self, state):
        if not isinstance(state, dict) or set(state) != set(self._state_constraints):
            raise ValueError(f"ReduceLROnPlateau state needs exactly {sorted(self._state_constraints)}, "
                             f"got {state!r}")
        owner = type("ReduceLROnPlateau", (), {"_parameter_constraints": self._state_constraints})
        for name, value in checked(owner, state).items():
            setattr(self, name, value)


class TerminateOnNaN(Callback):
    """When the loss becomes NaN or infinite, stop training and return normally instead of
    raising fastnn.NonFiniteError (the default). Either way the model keeps the weights of its
    last finite step (those of the epoch's start when an update overflowed, as weights or
    optimizer state beyond the dtype's range) and history.terminated_on_nan tells what happened."""

    terminate_on_nan = True

    def __init__(self):
        pass


def _path(v):
    if isinstance(v, (str, os.PathLike)):
        v = os.fspath(v)
        if isinstance(v, str) and v:
            return v
    return _INVALID


class ModelCheckpoint(_Monitor):
    """Save the model (fastnn.files: weights, optimizer state, counters, configs, history) at the
    end of every epoch, or with save_best_only only when `monitor` beats its best value so far
    (larger is better for accuracies, smaller otherwise, unless `mode` says). Each save is atomic:
    a save that fails leaves the previous file as it was. `filepath` may name the epoch (counted
    from 1, as Keras does) and the epoch's logs: "ckpt-{epoch:03d}-{val_loss:.4f}.safetensors".
    fastnn.load(filepath) gives back a model that trains on exactly as this one would have."""

    _parameter_constraints = {
        "filepath": [InstanceOf(str, convert=_path, name="a non-empty str or os.PathLike")],
        "monitor": [Options(MONITORS)],
        "save_best_only": [Boolean()], "mode": [Options(("auto", "min", "max"))],
        "verbose": [Interval(Integral, 0, 2)]}

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto", verbose=0):
        validate(self, dict(filepath=filepath, monitor=monitor, save_best_only=save_best_only,
                            mode=mode, verbose=verbose))
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(self.filepath) if f is not None]
        except ValueError as exc:
            raise ValueError(f"ModelCheckpoint's filepath {self.filepath!r} is not a valid format "
                             f"string ({exc}); write a literal brace as {{{{ or }}}}") from None
        if any(f == "" or f.isdigit() for f in fields):
            raise ValueError(f"ModelCheckpoint's filepath {self.filepath!r} may name fields "
                             f"({{epoch}}, {{val_loss}}...), not number them")
        self.best = -math.inf
        self.last_saved = None  # the path of the last save

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.save_best_only:
            v = self._value(logs)
            if v is None or not _mode_sign(self.mode, self.monitor) * v > self.best:
                return
            self.best = _mode_sign(self.mode, self.monitor) * v
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint cannot fill in {self.filepath!r} from epoch and the "
                             f"logs {sorted(logs)}: {exc!r}") from None
        from ..files import model_file
        model_file.save(self.model, path, pending_epoch=(epoch, logs))
        self.last_saved = path
        if self.verbose:
            print(f"Epoch {epoch + 1}: ModelCheckpoint saved the model to {path}")

"""Training: the engine pool, the epoch loop with its rollback, partial_fit, and the translation
between the model's state and the engine's calls. Sequential delegates here; nothing here knows
which backend runs or what kinds of layers the model has.

A model's trained state is one `Built` record: the plan (immutable), the flat buffers (params,
optimizer slots, running statistics, counters) and the pool of engines made from that plan.
Building or compiling swaps the whole record at once, so a call that took a record keeps a
consistent plan, buffers and engines until it returns.
"""
import contextlib
import os
import threading
import time
import weakref

import numpy as np

from .. import _engine as _backend
from .._engine.codes import CTR_SAMPLES, CTR_STEP, N_COUNTERS, ORDERS
from .._engine.errors import NonFiniteError
from .._engine.records import optim_record, result_record
from .._engine.validation import _all_finite, check_positive_int, pins
from ._config import _INVALID, Integral, Interval, Real
from .callbacks import Callback, CallbackList, History, in_use
from .progress import Poller, for_verbose


_LIVE_POOLS = weakref.WeakSet()


def _forget_engines_after_fork():
    for pool in list(_LIVE_POOLS):
        pool._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_engines_after_fork)


class EngineLock:
    """The lock of an engine pair, held for work that spans several engine calls (a fit's epochs,
    a gradient in chunks). Another thread waits for it. The thread that holds it can only come
    back to it from a signal handler or a callback that runs inside that work: waiting there
    would wait for ever, so that raises RuntimeError instead, as a re-entrant engine call does."""

    def __init__(self):
        self._lock = threading.RLock()  # re-entrant: the holder's own signal handler never blocks
        self._owner = None

    def __enter__(self):
        if self._owner == threading.get_ident():
            raise RuntimeError("this model's engine is in use by the call that this signal handler "
                               "or callback interrupted; call it again once that call returns")
        self._lock.acquire()
        self._owner = threading.get_ident()
        return self

    def __exit__(self, *exc):
        self._owner = None
        self._lock.release()


class EnginePool:
    """Engines (each with a workspace allocated once) for one plan and dtype, at most three per
    purpose. A workspace serves one call at a time: the engine itself makes a call from another
    thread wait, and the pair's lock is for work that spans several calls (a fit's epochs).
    Training and inference keep separate engines, so predict() from another thread never waits
    for a running fit()."""

    def __init__(self, plan, dtype):
        self.plan, self.dtype = plan, dtype
        self._forget()
        _LIVE_POOLS.add(self)

    def _forget(self):
        """No engines: a new lock and empty caches (at start, and in a child after os.fork, where
        an engine or lock that another thread of the parent held would stay held for good)."""
        # re-entrant: a signal handler that predicts may interrupt its own thread inside get()
        self._lock = threading.RLock()
        self._pools = {}
        self._answers = {}  # (rows, purpose, backend) -> the pair get() gave: a repeated call's answer

    def get(self, rows, purpose="train", module=None):
        """(engine, lock) for calls of up to `rows` rows on `module` (the current backend when
        None: a caller that has it saves the lookup)."""
        if module is None:
            module = _backend.current()
        key = (rows, purpose, module)
        pair = self._answers.get(key)  # one dict lookup (atomic under the GIL) for a repeated call
        if pair is not None:
            return pair
        with self._lock:
            pool = self._pools.setdefault((purpose, module.BACKEND), [])
            fits = [(e, lk) for e, lk in pool if e.batch >= rows]
            if fits:
                pair = min(fits, key=lambda pair: pair[0].batch)
            else:
                pair = (self.plan.engine(module, self.dtype, rows), EngineLock())
                if len(pool) >= 3:
                    pool.pop(0)
                pool.append(pair)
                self._answers.clear()  # a new engine may fit rows better; an old one may be gone
            if len(self._answers) >= 256:  # row counts of many sizes: start again
                self._answers.clear()
            self._answers[key] = pair
            return pair

    def batches(self, purpose):
        """Workspace sizes (rows) of the engines kept for `purpose` on the current backend."""
        with self._lock:
            return [e.batch for e, _ in self._pools.get((purpose, _backend.current().BACKEND), [])]


class Built:
    """A built model's plan, buffers and engines (see the module docstring)."""

    __slots__ = ("plan", "params", "slots", "state", "counters", "pool", "n_slots", "last_optim")

    def __init__(self, plan, dtype, params, slots, state, counters, n_slots):
        dtype = np.dtype(dtype)
        for name, a in (("params", params), ("slots", slots), ("state", state)):
            if not isinstance(a, np.ndarray) or a.dtype != dtype or not a.flags.c_contiguous:
                raise ValueError(f"the model's {name} buffer must be a C-contiguous {dtype} array")
        if (not isinstance(counters, np.ndarray) or counters.dtype != np.int64
                or counters.shape != (N_COUNTERS,)):
            raise ValueError(f"the model's counters must be {N_COUNTERS} int64 values")
        plan.check_buffers(params, slots, state, n_slots)
        self.plan, self.params, self.slots, self.state, self.counters = plan, params, slots, state, counters
        self.n_slots = n_slots
        self.pool = EnginePool(plan, dtype)
        self.last_optim = None  # (key, OPTIM record) of the last call: see _optim

    @classmethod
    def allocate(cls, plan, dtype, n_slots):
        if plan.n_params * (1 + n_slots) * np.dtype(dtype).itemsize > np.iinfo(np.intp).max:
            raise ValueError(f"a model of {plan.n_params:,} parameters is more than an array can hold")
        return cls(plan, dtype, np.zeros(plan.n_params, dtype),
                   np.zeros(n_slots * plan.n_params, dtype), np.zeros(max(plan.n_state, 1), dtype),
                   np.zeros(N_COUNTERS, np.int64), n_slots)

    def snapshot(self):
        return self.params.copy(), self.slots.copy(), self.state.copy(), self.counters.copy()

    def restore(self, snap):
        self.params[...], self.slots[...], self.state[...], self.counters[...] = snap

    def finite(self):
        """No NaN or infinity in the weights, the optimizer state or the running statistics: the
        backend's whole-array check (NumPy's isfinite made a temporary the size of each: 22 of the
        200 us of a drop-in partial_fit of one MNIST row)."""
        return _all_finite(self.params) and _all_finite(self.slots) and _all_finite(self.state)


def _totals(result):
    """The RESULT record (the engine's running totals) as Python numbers."""
    return dict(zip(result.dtype.names, result.item()))


def _optim(model, built, horizon, overflow_check=0):
    """The OPTIM record of this call (fastnn/_engine/records.py), kept for the next call with the
    same optimizer (immutable), rate scale, horizon and overflow_check: building it costs 7 us, a
    tenth of a one-row partial_fit."""
    key = (model.optimizer, float(model.lr_scale), horizon, overflow_check)
    last = built.last_optim
    if last is not None and last[0][0] is key[0] and last[0][1:] == key[1:]:
        return last[1]
    if model.optimizer.n_slots != built.n_slots:  # cannot happen: optimizers are immutable
        raise RuntimeError("the optimizer does not match the state it was compiled with")
    rec = optim_record(**model.optimizer.engine_fields(horizon), lr_scale=key[1], overflow_check=overflow_check)
    built.last_optim = (key, rec)
    return rec


_FIT_CONSTRAINTS = {
    "epochs": Interval(Integral, 1, None), "batch_size": Interval(Integral, 1, None),
    "verbose": Interval(Integral, 0, 2), "validation_split": Interval(Real, 0, 1, closed="left"),
}


def _check_option(name, value, constraint, owner="fit"):
    if name == "verbose" and isinstance(value, (bool, np.bool_)):
        return int(value)
    out = constraint.convert(value)
    if out is _INVALID:
        raise ValueError(f"The {name!r} parameter of {owner} must be {constraint}. Got {value!r} instead.")
    return out


def _accuracy_denominator(loss, n_outputs):
    if not loss.is_classifier:
        return None
    return lambda samples: loss.accuracy_denominator(samples, n_outputs)


def _check_batchnorm(model, n, batch):
    """BatchNorm learns nothing from a batch of one row (it normalises to beta, passes no gradient
    and leaves the running statistics as they were: fastnn_api.h): a last batch of one row is
    taken (scikit-learn's cross-validation folds and early_stopping splits make any count), but
    a fit whose every batch holds one row would never set the running statistics."""
    if any(ly.needs_batch_statistics for ly in model.layers) and (batch == 1 or n == 1):
        raise ValueError(
            f"BatchNorm needs at least 2 rows in a training batch (one row has no variance), but "
            f"with {n} sample(s) and batch_size {batch} every batch holds one row: use a larger "
            f"batch_size")


def _nonfinite_state():
    return NonFiniteError(
        "the model's weights, optimizer state or running statistics hold NaN or infinite values "
        "(written by hand, or overflowed by a too large learning rate), so no step can be taken: "
        "set finite values with set_weights, or build a new model")


def _next_rate(model, built, optim, epoch):
    """The rate of the model's next step: lr_scale x the schedule at this epoch, step and sample
    count."""
    return _backend.current().lr_at(optim, epoch, int(built.counters[CTR_STEP]), int(built.counters[CTR_SAMPLES]))


_FAR_BELOW_MAX = {np.dtype(np.float32): 1e38, np.dtype(np.float64): 1e307}


def _check_update_scalars(model, built, lr, where):
    """The update forms lr x (g + l2 w + l1 sign(w)) and w x (1 - lr x weight_decay) in the
    model's dtype (csrc/optimizers.c): where the rate, a penalty or their product overflows it,
    the update of every weight of ordinary size is infinite or NaN. Refused (ValueError) before
    anything changes."""
    dt = built.params.dtype
    o = model.optimizer
    eps = getattr(o, "eps", None)
    # Adam, RMSprop: g / (sqrt(v) + eps); the compiled engine flushes subnormals to 0
    if eps is not None and not dt.type(eps) >= np.finfo(dt).tiny:
        raise ValueError(f"{where}: eps is {eps:g}, which is 0 in {dt} (or subnormal, which the engine "
                         f"takes as 0): a weight whose gradient is 0 would get 0 / 0 = NaN. Use an eps "
                         f"of at least {np.finfo(dt).tiny:g}, or float64")
    far = _FAR_BELOW_MAX.get(dt, 0.0)
    if max(o.l2, o.l1) < far and lr * max(1.0, o.l2, o.l1, o.weight_decay) < far:
        return  # every term far below the dtype's largest value (in Python floats: an online call's cost)
    terms = (("the learning rate", lr), ("l2", o.l2), ("l1", o.l1), ("lr x l2", lr * o.l2),
             ("lr x l1", lr * o.l1), ("lr x weight_decay", lr * o.weight_decay))
    with np.errstate(over="ignore"):
        for name, value in terms:
            if not np.isfinite(dt.type(value)):
                rate = "" if name in ("l2", "l1") else (
                    f" (the rate {lr:g} is lr {o.lr:g} x lr_scale {model.lr_scale:g} x the schedule)")
                raise ValueError(
                    f"{where}: {name} is {value:g}{rate}, beyond the largest {dt}: the update of "
                    f"every weight would be infinite or NaN. Use a smaller rate or penalty, or float64")


def _split_validation(model, X, T, labels, sw, split):
    n = X.shape[0]
    n_val = int(n * split)
    if n_val < 1 or n - n_val < 1:
        raise ValueError(f"validation_split={split} of {n} samples leaves {n_val} for validation "
                         f"and {n - n_val} for training; both need at least one")
    cut = n - n_val  # as Keras: the last samples, before any shuffling
    take = lambda a, s: None if a is None else np.ascontiguousarray(a[s])  # noqa: E731
    train = (X[:cut], take(T, slice(None, cut)), take(labels, slice(None, cut)), take(sw, slice(None, cut)))
    val = (X[cut:], take(T, slice(cut, None)), take(labels, slice(cut, None)), take(sw, slice(cut, None)))
    return train, val


def epoch_order(order, n):
    """The caller's row order of one epoch as the engine takes it (train_epoch's `perm` with
    `shuffle=codes.ORDERS["given"]`): a fresh C-contiguous int64 array of the n row indices, each
    in [0, n); rows may repeat or be left out. ValueError otherwise, before the engine is called
    (the C engine refuses such an order too, before anything changes, but names nothing)."""
    arr = np.asarray(order)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"the epoch's row order must be a 1-D array of {n} row indices, got shape "
                         f"{arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"the epoch's row order must hold integers, not {arr.dtype}")
    if n and (arr.min() < 0 or arr.max() >= n):
        bad = int(np.flatnonzero((arr < 0) | (arr >= n))[0])
        raise ValueError(f"the epoch's row order holds {arr[bad]} at position {bad}: every entry must "
                         f"be a row index in [0, {n})")
    return np.array(arr, dtype=np.int64, order="C")  # a copy: the caller's array may change later


def fit(model, X, y, epochs, batch_size, validation_data, validation_split, shuffle, verbose,
        sample_weight, callbacks, x_finite=False):
    epochs = _check_option("epochs", epochs, _FIT_CONSTRAINTS["epochs"])
    batch_size = _check_option("batch_size", 32 if batch_size is None else batch_size,  # None: Keras's 32
                               _FIT_CONSTRAINTS["batch_size"])
    verbose = _check_option("verbose", verbose, _FIT_CONSTRAINTS["verbose"])
    split = _check_option("validation_split", validation_split, _FIT_CONSTRAINTS["validation_split"])
    order = shuffle if callable(shuffle) else None
    if order is None and not isinstance(shuffle, (bool, np.bool_)):
        raise ValueError(f"The 'shuffle' parameter of fit must be an instance of 'bool' or a callable "
                         f"(epoch -> row order). Got {shuffle!r} instead.")
    callbacks = list(callbacks or [])
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be fastnn Callback instances, not {cb!r}")
    if validation_data is not None and split:
        raise ValueError("give validation_data or validation_split, not both")
    # the caller's arrays, from their checks on (one reads X without the GIL), then what the engine
    # reads: see pins
    held = pins(X, y, sample_weight, *(validation_data if isinstance(validation_data, (tuple, list)) else ()))
    X, T, labels, sw = model._check_xy(X, y, sample_weight, build=True, x_finite=x_finite)
    val = None
    if split:
        (X, T, labels, sw), val = _split_validation(model, X, T, labels, sw, split)
        if sw is not None and not sw.sum() > 0:
            raise ValueError("sample_weight sums to zero over the training part of validation_split")
    elif validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (X_val, y_val) or (X_val, y_val, sample_weight)")
        val = model._check_xy(*validation_data[:2],
                              validation_data[2] if len(validation_data) == 3 else None, name="X_val")
    held += pins(X, T, labels, sw, *(val or ()))  # for the whole fit
    built = model._built
    loss = built.plan.loss
    n = X.shape[0]
    batch = min(batch_size, n)
    _check_batchnorm(model, n, batch)
    engine, engine_lock = built.pool.get(batch)
    perm = np.empty(n, np.int64)
    steps_per_epoch = -(-n // batch)
    # a cosine schedule without its own horizon decays over the steps of this fit
    horizon = int(built.counters[CTR_STEP]) + epochs * steps_per_epoch
    first = model.epochs_trained  # refused before the history and the callbacks see this fit
    _check_update_scalars(model, built, _next_rate(model, built, _optim(model, built, horizon), first),
                          f"epoch {first}")
    with in_use(callbacks):  # a callback holds one fit's state: two running fits may not share it
        history = model.history = History()  # (claimed first: a refused fit changes nothing)
        extra = [model._schedule_callback] if model._schedule_callback is not None else []
        progress = for_verbose(verbose)
        cbs = CallbackList(extra + callbacks + [history] + ([progress] if progress else []), model,
                           {"epochs": epochs, "steps": steps_per_epoch, "samples": n,
                            "batch_size": batch, "verbose": verbose})
        terminate_on_nan = any(getattr(cb, "terminate_on_nan", False) for cb in callbacks)
        acc_den = _accuracy_denominator(loss, built.plan.n_outputs)
        model.stop_training = False
        logs = {}
        cbs.on_train_begin()
        try:
            for _ in range(epochs):
                epoch = model.epochs_trained
                cbs.on_epoch_begin(epoch)
                optim = _optim(model, built, horizon)
                lr = _next_rate(model, built, optim, epoch)
                # the schedules never rise within an epoch: its first rate is its largest
                _check_update_scalars(model, built, lr, f"epoch {epoch}")
                if order is not None:  # the caller's order of this epoch's rows
                    perm, mode = epoch_order(order(epoch), n), ORDERS["given"]
                else:
                    mode = bool(shuffle)
                snap = built.snapshot()
                result = result_record()  # the engine writes its running totals here, batch by batch
                args = (result, built.params, built.slots, built.state, built.counters, perm, optim, X, T,
                        labels, sw, batch, mode, epoch)
                t0 = time.perf_counter()
                # the poller's thread starts and stops outside the engine's lock: whatever a progress
                # callback waits for, joining it never waits on that lock
                poller = Poller(cbs, epoch, result, acc_den, model=model) if cbs.wants_progress else None
                with poller if poller is not None else contextlib.nullcontext():
                    with engine_lock:
                        status, raised = engine.train_epoch(*args)
                elapsed = time.perf_counter() - t0
                result = _totals(result)
                # The engine never applies a step whose loss or gradient is not finite, but an update
                # can overflow (weights or optimizer state of about the dtype's largest value): then
                # the weights go back to the epoch's start. Checked after every epoch, also a finished
                # one (an overflow in its last batch meets no later batch's loss).
                finite = built.finite()
                if status != "ok" or not finite:
                    if not finite:
                        built.restore(snap)
                    if status == "interrupted":
                        raise raised
                    if not built.finite():  # non-finite before the epoch began
                        raise _nonfinite_state()
                    if terminate_on_nan:
                        history.terminated_on_nan = True
                        break
                    if finite:
                        raise NonFiniteError(
                            f"training diverged: the loss or a gradient became NaN or infinite at epoch "
                            f"{epoch} batch {result['bad_batch']}; the model keeps the weights of the last "
                            f"finite step (that batch was not applied). Try a smaller learning rate, or "
                            f"check the inputs' scale.")
                    raise NonFiniteError(
                        f"training diverged: an update in epoch {epoch} overflowed "
                        f"{built.params.dtype} (weights or optimizer state beyond its largest value); "
                        f"the model keeps the weights it had at the start of that epoch. Try a smaller "
                        f"learning rate, or check the inputs' scale.")
                logs = {"loss": result["loss_sum"] / result["weight_sum"] if result["weight_sum"] else float("nan")}
                if acc_den is not None:
                    logs["accuracy"] = result["correct"] / max(acc_den(result["samples"]), 1)
                if val is not None:
                    logs.update({"val_" + k: v for k, v in model._evaluate(*val).items()})
                logs["lr"] = lr
                logs["time"] = elapsed
                model.epochs_trained += 1
                if poller is not None and poller.error is not None:
                    # raised from on_epoch_progress in the poller's thread: it ends fit here, once the
                    # epoch (which never leaves C) is over and counted, as one from on_epoch_end would
                    raise poller.error
                cbs.on_epoch_end(epoch, logs)
                if model.stop_training:
                    history.stopped_early = True
                    break
        except KeyboardInterrupt:  # inside an epoch the engine stopped between two batches
            history.interrupted = True
            raise
        finally:
            cbs.on_train_end(logs)
    return history


def partial_fit(model, X, y, sample_weight, batch_size, call="partial_fit"):
    """One pass over the given rows, in order, in mini-batches of batch_size (None: all rows, one
    optimizer step); returns the mean loss of the applied batches. `call`: the method the errors
    name (train_on_batch is partial_fit of one batch)."""
    X, T, labels, sw = model._check_xy(X, y, sample_weight, build=True)
    n = X.shape[0]
    batch = n if batch_size is None else min(check_positive_int(batch_size, "batch_size"), n)
    sched = model.optimizer.schedule
    if sched.name == "cosine" and sched.total_steps is None:
        raise ValueError(f"{call} cannot know when training ends: give CosineDecay(total_steps=...)")
    built = model._built
    _check_batchnorm(model, n, batch)
    engine, engine_lock = built.pool.get(batch)
    result = result_record()
    # the engine reports an update that leaves a NaN or an infinity: partial_fit keeps no copy of
    # the state to go back to (fit keeps one per epoch, and checks the state after each)
    optim = _optim(model, built, 0, overflow_check=1)
    # the rate of this call's first step, its largest (the schedules never rise)
    lr = _next_rate(model, built, optim, model.epochs_trained)
    _check_update_scalars(model, built, lr, call)
    held = pins(X, T, labels, sw)  # see pins
    with engine_lock:
        if batch == n:  # one step on the rows as they are: no gather, threads only when worth it
            status, raised = engine.train_step(result, built.params, built.slots, built.state,
                                               built.counters, optim, X, T, labels, sw,
                                               model.epochs_trained)
        else:
            status, raised = engine.train_epoch(result, built.params, built.slots, built.state,
                                                built.counters, np.empty(n, np.int64), optim, X, T,
                                                labels, sw, batch, False, model.epochs_trained)
    result = _totals(result)
    if status != "ok":  # the engine applied the batches before the failing one, and nothing else
        if status == "interrupted":
            raise raised
        if status == "overflow":
            k, done = result["bad_batch"], result["batches"]
            raise NonFiniteError(
                f"the update of batch {k} of this {call} (rows {k * batch} to "
                f"{min((k + 1) * batch, n) - 1}) left NaN or infinite values in the model's weights "
                f"or optimizer state: it overflowed {built.params.dtype} (a rate, penalty or input "
                f"too large), or met such values written by hand. It was applied"
                + (f", as were the {done} batch(es) before it" if done else "")
                + f"; {call} keeps no copy to go back to (fit does, per epoch): set finite "
                "weights with set_weights, or load a saved model")
        if not built.finite():
            raise _nonfinite_state()
        done = result["batches"]
        raise NonFiniteError(
            f"training diverged in {call}: the loss or a gradient became NaN or infinite in "
            f"batch {result['bad_batch']} (rows {result['bad_batch'] * batch} to "
            f"{min((result['bad_batch'] + 1) * batch, n) - 1}); "
            + (f"the {done} batch(es) before it were applied, " if done else "")
            + "that batch and the ones after it were not.")
    return result["loss_sum"] / result["weight_sum"] if result["weight_sum"] else float("nan")

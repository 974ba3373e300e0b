"""The model API: Sequential stacks of layers trained by the engine, one compiled call per epoch.

    model = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dropout(0.2),
                               fastnn.Dense(10)])
    model.compile(optimizer=fastnn.Adam(1e-3), loss="cross_entropy")
    history = model.fit(X, y, epochs=3, batch_size=128, validation_data=(Xt, yt))
    model.predict(Xt), model.predict_proba(Xt), model.evaluate(Xt, yt)

The model owns one flat parameter buffer (weights first, then biases and batch-norm parameters),
the optimizer's state mirroring it, the batch-norm running statistics and two counters (optimizer
steps, samples seen). Layers' arrays are views of the buffer. The backend (compiled or NumPy) is
chosen by fastnn.set_backend and is invisible here.
"""
import threading
import time

import numpy as np

from .. import _engine as _backend
from .._engine.codes import CTR_SAMPLES, CTR_STEP, LOSSES, N_COUNTERS
from .._engine.errors import NonFiniteError
from .._engine.records import as_dict, layer_records, net_record, result_record
from .._engine.validation import (as_dtype, check_labels, check_matrix, check_positive_int,
                          check_sample_weight, check_targets)
from .layers import Activation, BatchNorm, Dense, Dropout, Layer, activation_code, initialize
from .optimizers import Adaptive, get_optimizer

LOSS_NAMES = {
    "cross_entropy": "softmax_xent", "categorical_crossentropy": "softmax_xent",
    "sparse_categorical_crossentropy": "softmax_xent", "softmax_xent": "softmax_xent",
    "log_loss": "softmax_xent",
    "binary_crossentropy": "sigmoid_bce", "bce": "sigmoid_bce", "sigmoid_bce": "sigmoid_bce",
    "mse": "mse", "mean_squared_error": "mse", "squared_error": "mse",
}
PREDICT_CHUNK = 1024  # rows per inference chunk: the inference workspace never grows past it


class History:
    """What fit recorded: `history` maps 'loss', 'accuracy', 'val_loss', 'val_accuracy', 'lr',
    'time' to one value per epoch; `epoch` lists the epoch numbers."""

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.interrupted = False
        self.stopped_early = False

    def _append(self, epoch, logs):
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self):
        last = {k: round(v[-1], 5) for k, v in self.history.items()} if self.epoch else {}
        return f"History(epochs={len(self.epoch)}, last={last})"


class Sequential:
    """A stack of layers. Build happens on the first fit (or `build(n_inputs)`)."""

    def __init__(self, layers=(), dtype="float32", seed=0):
        self.layers = []
        for ly in layers:
            self.add(ly)
        self.dtype = as_dtype(dtype)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
        self.seed = int(seed)
        self.optimizer = None
        self.loss = None
        self.built = False
        self.n_inputs = None
        self._lock = threading.Lock()  # one fit / partial_fit at a time
        self._engines_lock = threading.Lock()
        self._engines = {}
        self.epochs_trained = 0
        self._lr_scale = 1.0
        self._plateau = 0
        self._best_loss = np.inf

    # -- construction ------------------------------------------------------------------------
    def add(self, layer):
        if not isinstance(layer, Layer):
            raise TypeError(f"expected a fastnn layer (Dense, Activation, Dropout, BatchNorm), got {layer!r}")
        if getattr(self, "built", False):
            raise RuntimeError("cannot add layers to a built model")
        self.layers.append(layer)

    def compile(self, optimizer="adam", loss=None, **optimizer_kwargs):
        """Choose the optimizer (name or Optimizer object) and the loss: 'cross_entropy' (integer
        labels, softmax), 'binary_crossentropy' (0/1 targets, sigmoid; binary or multi-label),
        'mse' (regression). loss=None infers it from the last activation (softmax -> cross
        entropy, sigmoid -> binary cross entropy, else mse). Resets the optimizer state."""
        self.optimizer = get_optimizer(optimizer, **optimizer_kwargs)
        if loss is None:
            last = self._last_activation()
            loss = {"softmax": "cross_entropy", "sigmoid": "binary_crossentropy"}.get(last, "mse")
        if loss not in LOSS_NAMES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSS_NAMES)}")
        new_loss = LOSS_NAMES[loss]
        if self.built and new_loss == "softmax_xent" and self.n_outputs < 2:
            raise ValueError("cross_entropy needs at least 2 outputs (use binary_crossentropy for one)")
        self.loss = new_loss
        if self.built:  # the engine's description follows the new loss (fused link, loss code)
            self._layer_records["activation"] = [activation_code(act) if act is not None else 0
                                                 for _, act in self._effective_layers()]
            self._net_record["loss"] = LOSSES[self.loss]
            with self._engines_lock:
                self._engines = {}
            self._reset_optimizer()
        return self

    def _last_activation(self):
        for ly in reversed(self.layers):
            if isinstance(ly, (Dense, Activation)):
                return ly.activation
        return None

    def build(self, n_inputs):
        """Lay out the buffers for `n_inputs` features and initialise the weights."""
        n_inputs = check_positive_int(n_inputs, "n_inputs")
        if not self.layers or not any(isinstance(ly, Dense) for ly in self.layers):
            raise ValueError("the model needs at least one Dense layer")
        if self.loss is None:
            self.compile()
        layers = self._effective_layers()
        width = n_inputs
        for ly in self.layers:
            ly.n_in = width
            if isinstance(ly, Dense):
                width = ly.units
            ly.n_out = width
        self.n_inputs, self.n_outputs = n_inputs, width
        if self.loss == "softmax_xent" and width < 2:
            raise ValueError("cross_entropy needs at least 2 outputs (use binary_crossentropy for one)")
        # flat layout: every decayed weight first, then biases / batch-norm parameters
        specs, decayed, other = [], [], []
        for ly in self.layers:
            for name, shape, dec in ly._param_shapes():
                (decayed if dec else other).append((ly, name, shape))
        offsets, off = {}, 0
        for ly, name, shape in decayed + other:
            offsets[(id(ly), name)] = off
            off += int(np.prod(shape))
        self.n_params = off
        self.n_decay = sum(int(np.prod(s)) for _, _, s in decayed)
        self.params = np.zeros(self.n_params, self.dtype)
        self.state = np.zeros(max(sum(ly._state_size() for ly in self.layers), 1), self.dtype)
        s_off = 0
        for i, ly in enumerate(self.layers):
            spec = ly._spec()
            spec["activation"] = activation_code(layers[i][1]) if layers[i][1] is not None else 0
            if isinstance(ly, Dense):
                spec["w_off"], spec["b_off"] = offsets[(id(ly), "kernel")], offsets[(id(ly), "bias")]
                spec["alpha"] = ly.alpha
                ly.kernel = self.params[spec["w_off"]:spec["w_off"] + ly.n_in * ly.n_out].reshape(ly.n_in, ly.n_out)
                ly.bias = self.params[spec["b_off"]:spec["b_off"] + ly.n_out]
            elif isinstance(ly, Activation):
                spec["alpha"] = ly.alpha
            elif isinstance(ly, Dropout):
                spec["rate"] = ly.rate
            elif isinstance(ly, BatchNorm):
                spec["w_off"], spec["b_off"] = offsets[(id(ly), "gamma")], offsets[(id(ly), "beta")]
                spec["s_off"], spec["momentum"], spec["eps"] = s_off, ly.momentum, ly.eps
                ly.gamma = self.params[spec["w_off"]:spec["w_off"] + ly.n_out]
                ly.beta = self.params[spec["b_off"]:spec["b_off"] + ly.n_out]
                ly.running_mean = self.state[s_off:s_off + ly.n_out]
                ly.running_var = self.state[s_off + ly.n_out:s_off + 2 * ly.n_out]
                s_off += 2 * ly.n_out
            specs.append(spec)
        self._layer_records = layer_records(specs)
        self._net_record = net_record(loss=LOSSES[self.loss], n_inputs=n_inputs, n_outputs=width,
                                      n_params=self.n_params, n_decay=self.n_decay, n_state=s_off,
                                      seed=self.seed)
        self._initialize()
        self._reset_optimizer()
        self.built = True
        with self._engines_lock:
            self._engines = {}
        return self

    def _effective_layers(self):
        """(layer, activation) pairs; the last activation is dropped when the loss applies it
        (softmax under cross entropy, sigmoid under binary cross entropy)."""
        pairs = [(ly, getattr(ly, "activation", None)) for ly in self.layers]
        link = {"softmax_xent": "softmax", "sigmoid_bce": "sigmoid"}.get(self.loss)
        for i in range(len(pairs) - 1, -1, -1):
            ly, act = pairs[i]
            if isinstance(ly, (Dense, Activation)):
                if act == link and link is not None:
                    pairs[i] = (ly, "identity")
                break
        return pairs

    def _initialize(self):
        rng = np.random.default_rng(self.seed)
        for i, ly in enumerate(self.layers):
            if isinstance(ly, Dense):
                kind = ly.kernel_initializer
                if kind == "auto":
                    act = self._activation_after(i)
                    kind = "he_normal" if act in ("relu", "leaky_relu") else "glorot_uniform"
                ly.kernel[...] = initialize(kind, ly.n_in, ly.n_out, (ly.n_in, ly.n_out), rng, self.dtype)
                ly.bias[...] = 0
            elif isinstance(ly, BatchNorm):
                ly.gamma[...] = 1
                ly.beta[...] = 0
                ly.running_mean[...] = 0
                ly.running_var[...] = 1

    def _activation_after(self, i):
        """The activation that follows Dense layer i (its own, or the next Activation layer)."""
        if self.layers[i].activation not in (None, "identity"):
            return self.layers[i].activation
        for ly in self.layers[i + 1:]:
            if isinstance(ly, Activation):
                return ly.activation
            if isinstance(ly, Dense):
                break
        return "identity"

    def _reset_optimizer(self):
        self.slots = np.zeros(self.optimizer.n_slots * self.n_params, self.dtype)
        self.counters = np.zeros(N_COUNTERS, np.int64)
        self._lr_scale, self._plateau, self._best_loss = 1.0, 0, np.inf

    # -- views --------------------------------------------------------------------------------
    @property
    def coefs_(self):
        """Dense kernels, (n_in, n_out) each: views of the parameter buffer."""
        return [ly.kernel for ly in self.layers if isinstance(ly, Dense)]

    @property
    def intercepts_(self):
        return [ly.bias for ly in self.layers if isinstance(ly, Dense)]

    def get_weights(self):
        """Copies of every array, layer by layer: kernel, bias (Dense); gamma, beta,
        running_mean, running_var (BatchNorm)."""
        self._require_built()
        out = []
        for ly in self.layers:
            for name in self._array_names(ly):
                out.append(getattr(ly, name).copy())
        return out

    def set_weights(self, weights):
        self._require_built()
        targets = [(ly, n) for ly in self.layers for n in self._array_names(ly)]
        weights = list(weights)
        if len(weights) != len(targets):
            raise ValueError(f"expected {len(targets)} arrays, got {len(weights)}")
        checked = []
        for (ly, name), w in zip(targets, weights):
            w = np.asarray(w, dtype=self.dtype)
            dst = getattr(ly, name)
            if w.shape != dst.shape:
                raise ValueError(f"{type(ly).__name__}.{name} has shape {dst.shape}, got {w.shape}")
            if not np.isfinite(w).all():
                raise ValueError(f"{type(ly).__name__}.{name} contains NaN or infinite values")
            checked.append((dst, w))
        for dst, w in checked:  # all or nothing
            dst[...] = w

    @staticmethod
    def _array_names(ly):
        if isinstance(ly, Dense):
            return ("kernel", "bias")
        if isinstance(ly, BatchNorm):
            return ("gamma", "beta", "running_mean", "running_var")
        return ()

    def count_params(self):
        self._require_built()
        return self.n_params

    def summary(self, print_fn=print):
        """A table of layers, output widths and parameter counts (printed and returned)."""
        rows = [("Layer", "Output", "Params")]
        total = 0
        for ly in self.layers:
            n = sum(int(np.prod(s)) for _, s, _ in ly._param_shapes()) if self.built else 0
            total += n
            out = f"(None, {ly.n_out})" if self.built else "?"
            rows.append((repr(ly), out, str(n) if self.built else "?"))
        w = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:>{w[2]}}" for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.append("-" * len(lines[0]))
        lines.append(f"Total params: {total if self.built else '? (not built)'}  "
                     f"dtype: {self.dtype}  loss: {self.loss}  optimizer: {self.optimizer!r}  "
                     f"backend: {_backend.get_backend()}")
        text = "\n".join(lines)
        if print_fn:
            print_fn(text)
        return text

    def __repr__(self):
        return f"Sequential({self.layers!r})"

    # -- data -----------------------------------------------------------------------------------
    def _require_built(self):
        if not self.built:
            raise RuntimeError("the model is not built yet: call fit() or build(n_inputs) first")

    def _check_xy(self, X, y, sample_weight, name="X", build=False):
        """Validated (X, T, labels, sample_weight); build=True first builds an unbuilt model for
        X's width (fit, partial_fit), so X is checked once."""
        X = check_matrix(X, name, self.dtype, n_cols=self.n_inputs if self.built else None)
        if not self.built:
            if not build:
                self._require_built()
            self.build(X.shape[1])
        n = X.shape[0]
        if self.loss == "softmax_xent":
            labels, T = check_labels(y, n, self.n_outputs), None
        else:
            labels, T = None, check_targets(y, n, self.n_outputs, self.dtype)
            if self.loss == "sigmoid_bce" and ((T < 0) | (T > 1)).any():
                raise ValueError("binary_crossentropy targets must lie in [0, 1]")
        return X, T, labels, check_sample_weight(sample_weight, n, self.dtype)

    def _engine(self, rows, purpose="train"):
        """(engine, lock) whose workspace takes batches of `rows` rows: the smallest cached one
        that is large enough, else a new one (three at most per purpose; each is allocated once).
        A workspace serves one call at a time: hold the lock around every call. Training and
        inference keep separate engines, so predict() from another thread never touches the
        workspace of a running fit()."""
        module = _backend.current()
        with self._engines_lock:
            pool = self._engines.setdefault(purpose, [])
            fits = [(e, lk) for e, lk in pool if e.batch >= rows and type(e).__module__ == module.__name__]
            if fits:
                return min(fits, key=lambda pair: pair[0].batch)
            pair = (module.Engine(self._layer_records, self._net_record, self.dtype, rows), threading.Lock())
            if len(pool) >= 3:
                pool.pop(0)
            pool.append(pair)
            return pair

    # -- training -------------------------------------------------------------------------------
    def fit(self, X, y, epochs=1, batch_size=32, validation_data=None, shuffle=True, verbose=0,
            sample_weight=None, callback=None):
        """Train for `epochs` epochs of mini-batches (the last batch may be smaller). Each epoch is
        one call into the engine. Returns a History. `callback(epoch, logs)` runs after every
        epoch; returning True stops training. Ctrl-C stops between two batches: the model keeps
        every completed step and KeyboardInterrupt propagates."""
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("this model is already being trained in another thread")
        try:
            return self._fit(X, y, epochs, batch_size, validation_data, shuffle, verbose,
                             sample_weight, callback)
        finally:
            self._lock.release()

    def _fit(self, X, y, epochs, batch_size, validation_data, shuffle, verbose, sample_weight, callback):
        epochs = check_positive_int(epochs, "epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        if self.loss is None:
            self.compile()
        X, T, labels, sw = self._check_xy(X, y, sample_weight, build=True)
        if validation_data is not None:
            if len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be (X_val, y_val) or (X_val, y_val, sample_weight)")
            val = self._check_xy(*validation_data[:2], validation_data[2] if len(validation_data) == 3 else None,
                                 name="X_val")
        n = X.shape[0]
        batch = min(batch_size, n)
        engine, engine_lock = self._engine(batch)
        perm = np.empty(n, np.int64)
        steps_per_epoch = -(-n // batch)
        history = self.history = History()
        sched = self.optimizer.schedule
        # a cosine schedule without its own horizon decays over the steps of this fit
        horizon = int(self.counters[CTR_STEP]) + epochs * steps_per_epoch
        result = result_record()
        try:
            for _ in range(epochs):
                epoch = self.epochs_trained
                optim = self.optimizer.config(total_steps=horizon, lr_scale=self._lr_scale)
                lr = _backend.current().lr_at(optim, epoch, int(self.counters[CTR_STEP]), int(self.counters[CTR_SAMPLES]))
                snapshot = (self.params.copy(), self.slots.copy(), self.state.copy(), self.counters.copy())
                t0 = time.perf_counter()
                with engine_lock:
                    status, raised = engine.train_epoch(result, self.params, self.slots, self.state,
                                                        self.counters, perm, optim, X, T, labels, sw,
                                                        batch, bool(shuffle), epoch)
                elapsed = time.perf_counter() - t0
                res = as_dict(result)
                if status != "ok":
                    self._after_failure(status, raised, res, snapshot, epoch)
                logs = self._logs(res, lr, elapsed)
                if validation_data is not None:
                    logs.update({"val_" + k: v for k, v in self._evaluate(*val).items()})
                self.epochs_trained += 1
                history._append(epoch, logs)
                if verbose:
                    print(f"epoch {epoch + 1}: " + "  ".join(f"{k}={v:.4g}" for k, v in logs.items()), flush=True)
                if isinstance(sched, Adaptive):
                    self._adapt(sched, logs["loss"])
                if callback is not None and callback(epoch, logs):
                    history.stopped_early = True
                    break
        except KeyboardInterrupt:  # inside an epoch the engine stopped between two batches
            history.interrupted = True
            raise
        return history

    def _adapt(self, sched, loss):
        if loss > self._best_loss - sched.tol:
            self._plateau += 1
            if self._plateau >= sched.patience:
                self._lr_scale /= sched.factor
                self._plateau = 0
        else:
            self._plateau = 0
        self._best_loss = min(self._best_loss, loss)

    def _logs(self, res, lr, elapsed):
        logs = {"loss": res["loss_sum"] / res["weight_sum"] if res["weight_sum"] else float("nan")}
        if self.loss == "softmax_xent":
            logs["accuracy"] = res["correct"] / max(res["samples"], 1)
        elif self.loss == "sigmoid_bce":
            logs["accuracy"] = res["correct"] / max(res["samples"] * self.n_outputs, 1)
        logs["lr"] = lr
        logs["time"] = elapsed
        return logs

    def _after_failure(self, status, raised, res, snapshot, epoch):
        """An epoch stopped early: keep a consistent model, then raise."""
        finite = np.isfinite(self.params).all() and np.isfinite(self.slots).all() and np.isfinite(self.state).all()
        if not finite:  # cannot happen when the engine keeps its promise; restore the epoch's start
            self.params[...], self.slots[...], self.state[...], self.counters[...] = snapshot
        if status == "interrupted":
            raise raised
        raise NonFiniteError(
            f"training diverged: the loss or a gradient became NaN or infinite at epoch {epoch} "
            f"batch {res['bad_batch']}; the weights are those of the last finite step. "
            f"Try a smaller learning rate, or check the inputs' scale.")

    def partial_fit(self, X, y, sample_weight=None):
        """One optimizer step on this batch (any size: it is split into chunks of the workspace's
        batch when larger). Builds the model on first use. Returns the batch loss."""
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("this model is already being trained in another thread")
        try:
            if self.loss is None:
                self.compile()
            X, T, labels, sw = self._check_xy(X, y, sample_weight, build=True)
            sched = self.optimizer.schedule
            if sched.name == "cosine" and sched.total_steps is None:
                raise ValueError("partial_fit cannot know when training ends: give CosineDecay(total_steps=...)")
            engine, engine_lock = self._engine(min(X.shape[0], 4096))
            optim = self.optimizer.config(total_steps=0, lr_scale=self._lr_scale)
            total, wsum = 0.0, 0.0
            result = result_record()
            for s in range(0, X.shape[0], engine.batch):
                sl = slice(s, s + engine.batch)
                with engine_lock:
                    status, _ = engine.train_step(result, self.params, self.slots, self.state, self.counters,
                                                  optim, X[sl], None if T is None else T[sl],
                                                  None if labels is None else labels[sl],
                                                  None if sw is None else sw[sl], self.epochs_trained)
                if status != "ok":
                    raise NonFiniteError("training diverged: non-finite loss or gradient in partial_fit; "
                                         "the step was not applied")
                total += float(result["loss_sum"])
                wsum += float(result["weight_sum"])
            return total / wsum
        finally:
            self._lock.release()

    train_on_batch = partial_fit

    # -- inference ------------------------------------------------------------------------------
    def _outputs(self, X, link):
        self._require_built()
        X = check_matrix(X, "X", self.dtype, n_cols=self.n_inputs)
        out = np.empty((X.shape[0], self.n_outputs), self.dtype)
        engine, lock = self._engine(min(PREDICT_CHUNK, X.shape[0]), "infer")
        with lock:
            engine.predict(out, self.params, self.state, X, link)
        return out

    def forward(self, X):
        """Raw outputs of the last layer (logits for the classification losses), inference mode."""
        return self._outputs(X, False)

    __call__ = forward

    def predict_proba(self, X):
        """Class probabilities: softmax (cross entropy) or sigmoid (binary cross entropy) of the
        outputs."""
        if self.loss == "mse":
            raise AttributeError("predict_proba is for classification losses; this model uses mse")
        return self._outputs(X, True)

    def predict(self, X):
        """Class labels (argmax for cross entropy, probability >= 0.5 per output for binary cross
        entropy) or, for mse, the predicted values."""
        z = self._outputs(X, False)
        if self.loss == "softmax_xent":
            return z.argmax(axis=1)
        if self.loss == "sigmoid_bce":
            return (z >= 0).astype(np.int64)
        return z

    def evaluate(self, X, y, sample_weight=None):
        """{'loss': ..., 'accuracy': ...} (accuracy for classification losses), inference mode."""
        self._require_built()
        return self._evaluate(*self._check_xy(X, y, sample_weight))

    def _evaluate(self, X, T, labels, sw):
        be = _backend.current()
        z = self._outputs(X, False)
        out = {"loss": be.loss_forward(LOSSES[self.loss], z, T, labels, sw)}
        if self.loss == "softmax_xent":
            out["accuracy"] = float((z.argmax(axis=1) == labels).mean())
        elif self.loss == "sigmoid_bce":
            out["accuracy"] = float(((z > 0) == (T >= 0.5)).mean())
        return out

    def score(self, X, y, sample_weight=None):
        """Accuracy for classification, R^2 for regression (scikit-learn's convention)."""
        if self.loss == "mse":
            Xc, T, _, sw = self._check_xy(X, y, sample_weight)
            p = self._outputs(Xc, False)
            w = np.ones(len(T)) if sw is None else sw.astype(np.float64)
            res = (w[:, None] * (T - p) ** 2).sum(0)
            tot = (w[:, None] * (T - np.average(T, axis=0, weights=w)) ** 2).sum(0)
            return float(np.mean(1 - res / np.where(tot == 0, 1, tot)))
        return self.evaluate(X, y, sample_weight)["accuracy"]

    def gradient(self, X, y, sample_weight=None, step=None):
        """(loss, flat gradient) of one batch in training mode, nothing updated: for checks."""
        self._require_built()
        X, T, labels, sw = self._check_xy(X, y, sample_weight)
        grads = np.empty(self.n_params, self.dtype)
        step = int(self.counters[CTR_STEP]) if step is None else int(step)
        engine, lock = self._engine(X.shape[0])
        with lock:
            loss = engine.gradient(grads, self.params, X, T, labels, sw, step)
        return loss, grads

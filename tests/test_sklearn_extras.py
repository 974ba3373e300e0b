"""What fastnn's MLPClassifier / MLPRegressor add to scikit-learn's, each against an expectation of
its own: NumPy forward passes and optimizer steps written out by hand from the initial weights
(drawn here as scikit-learn draws them), sample weights computed from class counts, scikit-learn's
own fit and output where the extra is off; then the hostile inputs, each test naming the defect it
guards."""
import copy
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
from scipy.special import expit, softmax  # noqa: E402
from sklearn import neural_network as skn  # noqa: E402
from sklearn.base import clone, is_classifier  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import fastnn  # noqa: E402
from fastnn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from fastnn.nn import Activation, BatchNorm, Dense, Dropout  # noqa: E402
from fastnn.nn.optimizers import SGD, Adam, RMSprop, SklearnAdam, SklearnSGD  # noqa: E402
from conftest import outcome_in_thread  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))
N, D = 48, 4
QUIET = dict(tol=0.0, n_iter_no_change=10**6)  # no stopping rule: exactly max_iter epochs


def data(kind="multiclass", n=N, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D))
    if kind == "multiclass":  # imbalanced: 'balanced' weights differ per class
        y = np.array(["a"] * (n // 2) + ["b"] * (n // 3) + ["c"] * (n - n // 2 - n // 3))
        X[: n // 2, 0] += 1.0
    elif kind == "binary":
        y = np.where(X[:, 0] + 0.3 * rng.standard_normal(n) > 0.4, 5, -1)
    else:
        y = X[:, 0] - 2 * X[:, 1] + 0.1 * rng.standard_normal(n)
    return X, y


# -- the maths, by hand ---------------------------------------------------------------------------
ACT = {"identity": lambda z: z, "relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
       "logistic": expit, "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z)}
DACT = {"identity": lambda z: np.ones_like(z), "relu": lambda z: (z > 0) * 1.0,
        "tanh": lambda z: 1 - np.tanh(z) ** 2, "logistic": lambda z: expit(z) * (1 - expit(z)),
        "leaky_relu": lambda z: np.where(z > 0, 1.0, 0.01)}


def glorot(units, acts, seed):
    """scikit-learn's _init_coef, layer by layer from one RandomState (factor 2 for logistic)."""
    rs = np.random.RandomState(seed)
    Ws, bs = [], []
    for i, (a, b) in enumerate(zip(units[:-1], units[1:])):
        bound = np.sqrt((2.0 if acts[min(i, len(acts) - 1)] == "logistic" else 6.0) / (a + b))
        Ws.append(rs.uniform(-bound, bound, (a, b)))
        bs.append(rs.uniform(-bound, bound, b))
    return Ws, bs, rs


def forward(X, Ws, bs, acts, out):
    """Pre-activations and activations of every layer."""
    zs, hs = [], [X]
    for i, (W, b) in enumerate(zip(Ws, bs)):
        z = hs[-1] @ W + b
        zs.append(z)
        last = i == len(Ws) - 1
        hs.append({"softmax": lambda v: softmax(v, axis=1), "identity": lambda v: v}[out](z) if last
                  else ACT[acts[i]](z))
    return zs, hs


def objective_and_gradient(X, Y, Ws, bs, acts, out, alpha, sw=None):
    """scikit-learn's objective (log loss with softmax, or half the squared error, plus
    0.5 alpha |W|^2 / S) and its gradient, S the sample-weight sum."""
    w = np.ones(len(X)) if sw is None else np.asarray(sw, float)
    S = w.sum()
    zs, hs = forward(X, Ws, bs, acts, out)
    P = hs[-1]
    per = -(Y * np.log(P)).sum(1) if out == "softmax" else 0.5 * ((P - Y) ** 2).mean(1)
    loss = float(w @ per) / S + 0.5 * alpha * sum((W ** 2).sum() for W in Ws) / S
    delta = (P - Y) * (w / S)[:, None]
    gW, gb = [None] * len(Ws), [None] * len(Ws)
    for i in range(len(Ws) - 1, -1, -1):
        gW[i] = hs[i].T @ delta + alpha * Ws[i] / S
        gb[i] = delta.sum(0)
        if i:
            delta = (delta @ Ws[i].T) * DACT[acts[i - 1]](zs[i - 1])
    return loss, gW, gb


def onehot(y):
    classes = np.unique(y)
    return (y[:, None] == classes[None, :]).astype(float)


def assert_weights(est, Ws, bs, rtol=1e-9, atol=1e-12):
    for got, want in zip(est.coefs_ + est.intercepts_, Ws + bs):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# == dropout ======================================================================================
def test_dropout_puts_one_dropout_layer_after_each_hidden_layer_with_its_rate():
    X, y = data()
    est = MLPClassifier((5, 4, 3), dropout=[0.1, 0.0, 0.3], max_iter=1, random_state=0).fit(X, y)
    layers = est.model_.layers
    assert [type(ly) for ly in layers] == [Dense, Dropout, Dense, Dense, Dropout, Dense]
    assert [ly.units for ly in layers if isinstance(ly, Dense)] == [5, 4, 3, 3]
    assert [ly.rate for ly in layers if isinstance(ly, Dropout)] == [0.1, 0.3]
    est = MLPClassifier((5, 4), dropout=0.25, batch_norm=True, max_iter=1, random_state=0).fit(X, y)
    assert [type(ly) for ly in est.model_.layers] == [Dense, BatchNorm, Activation, Dropout] * 2 + [Dense]
    assert all(ly.rate == 0.25 for ly in est.model_.layers if isinstance(ly, Dropout))


@pytest.mark.parametrize("dropout", [0.0, [0.0, 0.0]], ids=["scalar", "list"])
def test_dropout_zero_is_scikit_learns_fit(dropout):
    X, y = data()
    params = dict(hidden_layer_sizes=(6, 5), batch_size=16, max_iter=4, random_state=1,
                  learning_rate_init=0.01, **QUIET)
    sk = skn.MLPClassifier(**params).fit(X, y)
    fn = MLPClassifier(dropout=dropout, **params).fit(X, y)
    assert not any(isinstance(ly, Dropout) for ly in fn.model_.layers)
    assert_weights(fn, sk.coefs_, sk.intercepts_, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(fn.loss_curve_, sk.loss_curve_, rtol=1e-6)


def test_dropout_step_by_hand_inverted_dropout_on_the_hidden_layer():
    """One SGD step on one row: the hidden units dropped are those whose outgoing weights did not
    move (and their incoming weights neither); the step equals the one computed by hand with that
    mask and the survivors scaled by 1 / (1 - rate)."""
    H, rate, lr = 200, 0.4, 0.1
    X, y = data("regression")
    X1, y1 = X[:1], y[:1]
    est = MLPRegressor(hidden_layer_sizes=(H,), activation="tanh", solver="sgd", momentum=0.0,
                       learning_rate_init=lr, alpha=0.0, dropout=rate, max_iter=1, shuffle=False,
                       random_state=3, **QUIET).fit(X1, y1)
    (W1, W2), (b1, b2), _ = glorot([D, H, 1], ["tanh"], 3)
    dropped = np.all(est.coefs_[1] == W2, axis=1)
    np.testing.assert_array_equal(np.all(est.coefs_[0] == W1, axis=0), dropped)
    assert 45 < dropped.sum() < 115  # Binomial(200, 0.4): 80 +- 7
    mask = (~dropped) / (1 - rate)
    z1 = X1 @ W1 + b1
    h = np.tanh(z1) * mask
    delta = h @ W2 + b2 - y1[:, None]
    dz1 = (delta @ W2.T) * mask * (1 - np.tanh(z1) ** 2)
    assert_weights(est, [W1 - lr * X1.T @ dz1, W2 - lr * h.T @ delta],
                   [b1 - lr * dz1.sum(0), b2 - lr * delta.sum(0)])


def test_dropout_is_off_at_inference_and_seeded_by_random_state():
    X, y = data()
    est = MLPClassifier((8,), dropout=0.5, max_iter=5, random_state=0).fit(X, y)
    plain = MLPClassifier((8,), max_iter=5, random_state=0).fit(X, y)
    assert not np.allclose(est.coefs_[0], plain.coefs_[0])  # dropout changed the training
    P = est.predict_proba(X)
    np.testing.assert_array_equal(est.predict_proba(X), P)
    np.testing.assert_allclose(P, forward(X, est.coefs_, est.intercepts_, ["relu"], "softmax")[1][-1],
                               rtol=1e-12, atol=1e-14)
    twin = MLPClassifier((8,), dropout=0.5, max_iter=5, random_state=0).fit(X, y)
    assert_weights(twin, est.coefs_, est.intercepts_, rtol=0, atol=0)


# == batch_norm ===================================================================================
def test_batch_norm_layers_and_running_statistics_of_one_full_batch_step():
    """Dense -> BatchNorm -> Activation per hidden layer; after one full-batch step the running
    statistics are 0.9 (0, 1) + 0.1 (batch mean, unbiased variance) of the pre-activations at the
    initial weights."""
    X, y = data()
    est = MLPClassifier((5, 4), batch_norm=True, batch_size=N, max_iter=1, shuffle=False,
                        random_state=2, **QUIET).fit(X, y)
    layers = est.model_.layers
    assert [type(ly) for ly in layers] == [Dense, BatchNorm, Activation] * 2 + [Dense]
    assert all(ly.activation in (None, "identity") for ly in layers if isinstance(ly, Dense))
    assert [ly.activation for ly in layers if isinstance(ly, Activation)] == ["relu", "relu"]
    Ws, bs, _ = glorot([D, 5, 4, 3], ["relu"], 2)
    h = X
    for i, bn in enumerate(ly for ly in layers if isinstance(ly, BatchNorm)):
        z = h @ Ws[i] + bs[i]
        np.testing.assert_allclose(bn.running_mean, 0.1 * z.mean(0), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * z.var(0, ddof=1), rtol=1e-10)
        h = np.maximum((z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5), 0)  # gamma 1, beta 0


def test_batch_norm_predicts_with_the_running_statistics():
    X, y = data()
    est = MLPClassifier((5,), batch_norm=True, batch_size=10, max_iter=6, random_state=0).fit(X, y)
    bn = est.model_.layers[1]
    assert not np.allclose(bn.running_mean, 0) and not np.allclose(bn.running_var, 1)
    z = X @ est.coefs_[0] + est.intercepts_[0]
    h = np.maximum(bn.gamma * (z - bn.running_mean) / np.sqrt(bn.running_var + 1e-5) + bn.beta, 0)
    np.testing.assert_allclose(est.predict_proba(X), softmax(h @ est.coefs_[1] + est.intercepts_[1], axis=1),
                               rtol=1e-10, atol=1e-14)


# == activations ==================================================================================
def test_activation_list_and_leaky_relu_forward_by_hand():
    X, y = data()
    est = MLPClassifier((5, 4), activation=["tanh", "leaky_relu"], max_iter=3, random_state=0).fit(X, y)
    dense = est.model_.layers
    assert [type(ly) for ly in dense] == [Dense] * 3
    assert [ly.activation for ly in dense[:2]] == ["tanh", "leaky_relu"]
    want = forward(X, est.coefs_, est.intercepts_, ["tanh", "leaky_relu"], "softmax")[1][-1]
    np.testing.assert_allclose(est.predict_proba(X), want, rtol=1e-12, atol=1e-14)
    slope = MLPClassifier((5,), activation="leaky_relu", max_iter=3, random_state=0).fit(X, y)
    want = forward(X, slope.coefs_, slope.intercepts_, ["leaky_relu"], "softmax")[1][-1]
    np.testing.assert_allclose(slope.predict_proba(X), want, rtol=1e-12, atol=1e-14)
    assert (X @ slope.coefs_[0] + slope.intercepts_[0] < 0).any()  # the negative slope was used


@pytest.mark.parametrize("act", ["relu", "logistic"])
def test_a_list_of_one_activation_is_scikit_learns_fit_with_it(act):
    X, y = data()
    params = dict(hidden_layer_sizes=(6, 5), batch_size=16, max_iter=3, random_state=4, **QUIET)
    sk = skn.MLPClassifier(activation=act, **params).fit(X, y)
    fn = MLPClassifier(activation=[act, act], **params).fit(X, y)
    assert_weights(fn, sk.coefs_, sk.intercepts_, rtol=1e-6, atol=1e-10)


# == solvers adamw and rmsprop: two full-batch steps by hand ========================================
def _adamw(p, g, state, t, lr, b1, b2, eps, decay):
    m, v = state.get("m", 0 * p), state.get("v", 0 * p)
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    state.update(m=m, v=v)
    return p * (1 - lr * decay) - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)


def _rmsprop(p, g, state, t, lr, rho, eps, decay):
    s = rho * state.get("s", 0 * p) + (1 - rho) * g * g
    state["s"] = s
    return p - lr * g / (np.sqrt(s) + eps)


@pytest.mark.parametrize("solver", ["adamw", "rmsprop"])
def test_adamw_and_rmsprop_take_their_closed_form_steps(solver):
    """Two epochs of one full batch: each step is the optimizer's update of the hand-computed
    gradient (alpha's term included; AdamW decays the weights, not the biases, by lr * 0.01)."""
    X, y = data()
    Y = onehot(y)
    lr, alpha, b1, b2, eps = 0.05, 0.3, 0.8, 0.9, 1e-3
    est = MLPClassifier((5,), activation="leaky_relu", solver=solver, alpha=alpha, batch_size=N,
                        learning_rate_init=lr, beta_1=b1, beta_2=b2, epsilon=eps, max_iter=2,
                        random_state=5, **QUIET).fit(X, y)
    Ws, bs, _ = glorot([D, 5, 3], ["leaky_relu"], 5)
    step, extra = (_adamw, (b1, b2)) if solver == "adamw" else (_rmsprop, (0.9,))
    states = [dict() for _ in range(4)]
    losses = []
    for t in (1, 2):
        loss, gW, gb = objective_and_gradient(X, Y, Ws, bs, ["leaky_relu"], "softmax", alpha)
        losses.append(loss)
        Ws = [step(W, g, s, t, lr, *extra, eps, 0.01) for W, g, s in zip(Ws, gW, states[:2])]
        bs = [step(b, g, s, t, lr, *extra, eps, 0.0) for b, g, s in zip(bs, gb, states[2:])]
    assert_weights(est, Ws, bs)
    np.testing.assert_allclose(est.loss_curve_, losses, rtol=1e-10)


# == class_weight =================================================================================
@pytest.mark.parametrize("kind", ["multiclass", "binary"])
def test_class_weight_balanced_is_the_sample_weight_from_class_counts(kind):
    X, y = data(kind)
    classes, counts = np.unique(y, return_counts=True)
    assert len(set(counts)) > 1
    by_class = dict(zip(classes, len(y) / (len(classes) * counts)))
    sw = np.array([by_class[c] for c in y])
    params = dict(hidden_layer_sizes=(5,), max_iter=3, batch_size=16, random_state=0, **QUIET)
    got = MLPClassifier(class_weight="balanced", **params).fit(X, y)
    want = MLPClassifier(**params).fit(X, y, sample_weight=sw)
    assert_weights(got, want.coefs_, want.intercepts_, rtol=1e-12, atol=1e-15)
    assert got.loss_curve_ == pytest.approx(want.loss_curve_, rel=1e-12)
    plain = MLPClassifier(**params).fit(X, y)
    assert not np.allclose(got.coefs_[0], plain.coefs_[0])


def test_class_weight_dict_times_sample_weight():
    X, y = data()
    cw = {"a": 3.0, "c": 0.5}  # 'b' keeps weight 1
    sw = np.linspace(0.5, 2.0, len(y))
    params = dict(hidden_layer_sizes=(5,), max_iter=3, batch_size=16, random_state=0, **QUIET)
    got = MLPClassifier(class_weight=cw, **params).fit(X, y, sample_weight=sw)
    want = MLPClassifier(**params).fit(X, y, sample_weight=sw * np.array([cw.get(c, 1.0) for c in y]))
    assert_weights(got, want.coefs_, want.intercepts_, rtol=1e-12, atol=1e-15)
    # partial_fit with a dict: the same weights, batch by batch
    a = MLPClassifier(class_weight=cw, **params).partial_fit(X, y, classes=["a", "b", "c"])
    b = MLPClassifier(**params).partial_fit(X, y, classes=["a", "b", "c"],
                                            sample_weight=[cw.get(c, 1.0) for c in y])
    assert_weights(a, b.coefs_, b.intercepts_, rtol=1e-12, atol=1e-15)


def test_class_weight_refusals_leave_the_estimator_unfitted():
    """Defect: the refusals came after the network was built, leaving a 'fitted' estimator with
    untrained weights that predicted."""
    X, y = data()
    Y = np.c_[y == "a", y == "b"].astype(int)
    est = MLPClassifier(class_weight="balanced", max_iter=2)
    with pytest.raises(ValueError, match="class_weight is not supported for multi-label"):
        est.fit(X, Y)
    with pytest.raises(NotFittedError):
        est.predict(X)
    est = MLPClassifier(class_weight="balanced")
    with pytest.raises(ValueError, match="'balanced' is not supported for partial_fit"):
        est.partial_fit(X, y, classes=["a", "b", "c"])
    with pytest.raises(NotFittedError):
        est.predict_proba(X)


@pytest.mark.parametrize("weight", [-1.0, np.nan, np.inf])
def test_class_weight_values_must_be_finite_and_non_negative(weight):
    """Defect: a negative or NaN class weight was reported as a bad sample_weight."""
    X, y = data()
    with pytest.raises(ValueError, match="class_weight must give each class a finite weight >= 0"):
        MLPClassifier(class_weight={"a": weight}, max_iter=1).fit(X, y)


# == dtype ========================================================================================
@pytest.mark.parametrize("dtype, x_dtype, want", [
    ("float32", np.float64, np.float32), (None, np.float32, np.float32), (None, np.float64, np.float64),
    ("float64", np.float32, np.float64), (None, np.float16, np.float64), (None, np.int64, np.float64),
    (None, bool, np.float64)])
def test_dtype_chooses_the_models_precision(dtype, x_dtype, want):
    X, y = data("binary")
    X = (X * 3).astype(x_dtype)
    est = MLPClassifier((4,), dtype=dtype, max_iter=2, random_state=0).fit(X, y)
    assert est.model_.dtype == want
    assert all(a.dtype == want for a in est.coefs_ + est.intercepts_)
    # outputs in scikit-learn's dtype: X's (as validated: float32, else float64) with the model's
    assert est.predict_proba(X).dtype == np.result_type(want, np.float32 if x_dtype == np.float32 else np.float64)
    if want == np.float64:  # the same fit as on float64 data
        ref = MLPClassifier((4,), max_iter=2, random_state=0).fit(X.astype(np.float64), y)
        assert_weights(est, ref.coefs_, ref.intercepts_, rtol=0, atol=0)


def test_dtype_float32_on_float64_input_is_the_float32_fit():
    X, y = data()
    a = MLPClassifier((5,), dtype="float32", max_iter=3, random_state=0).fit(X, y)
    b = MLPClassifier((5,), max_iter=3, random_state=0).fit(X.astype(np.float32), y)
    assert_weights(a, b.coefs_, b.intercepts_, rtol=0, atol=0)


# == callbacks ====================================================================================
class Recorder(fastnn.Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append(("begin", None))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append((epoch, dict(logs)))

    def on_train_end(self, logs=None):
        self.calls.append(("end", None))


class StopAt(fastnn.Callback):
    def __init__(self, epoch, raise_interrupt=False):
        self.epoch, self.raise_interrupt = epoch, raise_interrupt

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            if self.raise_interrupt:
                raise KeyboardInterrupt
            self.model.stop_training = True


def test_callbacks_are_called_each_epoch_with_the_epochs_logs():
    X, y = data()
    rec = Recorder()
    est = MLPClassifier((5,), max_iter=4, random_state=0, callbacks=[rec], **QUIET).fit(X, y)
    assert [c[0] for c in rec.calls] == ["begin", 0, 1, 2, 3, "end"]
    logs = [c[1] for c in rec.calls[1:-1]]
    assert [lg["loss"] for lg in logs] == est.loss_curve_
    assert all({"loss", "accuracy", "lr", "time"} <= set(lg) for lg in logs)
    assert est.history_.history["loss"] == est.loss_curve_


def test_fastnns_early_stopping_stops_the_fit():
    X, y = data()
    es = fastnn.EarlyStopping(monitor="loss", min_delta=10.0, patience=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # stopped: not 'maximum iterations'
        est = MLPClassifier((5,), max_iter=50, random_state=0, callbacks=[es], **QUIET).fit(X, y)
    assert est.n_iter_ == len(est.loss_curve_) == 2 and es.stopped_epoch == 1
    assert est.history_.stopped_early


def test_a_callback_setting_stop_training_ends_the_fit_after_that_epoch():
    X, y = data()
    params = dict(hidden_layer_sizes=(5,), random_state=0, **QUIET)
    est = MLPClassifier(max_iter=50, callbacks=[StopAt(2)], **params).fit(X, y)
    ref = MLPClassifier(max_iter=3, **params).fit(X, y)
    assert est.n_iter_ == 3 and est.loss_curve_ == ref.loss_curve_
    assert_weights(est, ref.coefs_, ref.intercepts_, rtol=0, atol=0)


# == Ctrl-C =======================================================================================
def test_ctrl_c_in_fit_warns_like_scikit_learn_and_leaves_a_usable_estimator():
    X, y = data()
    params = dict(hidden_layer_sizes=(5,), random_state=0, **QUIET)
    with pytest.warns(UserWarning, match="^Training interrupted by user.$"):
        est = MLPClassifier(max_iter=50, callbacks=[StopAt(2, raise_interrupt=True)], **params).fit(X, y)
    ref = MLPClassifier(max_iter=3, **params).fit(X, y)
    assert est.n_iter_ == 3 and est.loss_curve_ == ref.loss_curve_ and est.history_.interrupted
    np.testing.assert_array_equal(est.predict_proba(X), ref.predict_proba(X))
    est.set_params(callbacks=None, max_iter=2).fit(X, y)  # and it fits again
    assert est.n_iter_ == 2


class CtrlC(fastnn.Callback):
    """Sends SIGINT while the engine runs an epoch after the first."""

    sent_in = None

    def on_epoch_progress(self, epoch, logs):
        if epoch >= 1 and logs["batches"] > 0 and self.sent_in is None:
            self.sent_in = epoch
            os.kill(os.getpid(), signal.SIGINT)


def test_sigint_during_an_epoch_stops_between_batches_with_scikit_learns_warning():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30000, 20)), rng.integers(0, 3, 30000)  # epochs of several 0.1 s
    ctrl_c = CtrlC()
    with pytest.warns(UserWarning, match="^Training interrupted by user.$"):
        est = MLPClassifier((128,), batch_size=1, max_iter=50, callbacks=[ctrl_c]).fit(X, y)
    # the epochs before the interrupted one are complete and booked, that one is not
    assert ctrl_c.sent_in is not None and est.n_iter_ == len(est.loss_curve_) == ctrl_c.sent_in
    assert est.history_.interrupted
    assert est.predict(X[:5]).shape == (5,) and np.isfinite(est.predict_proba(X[:5])).all()


# == validation_loss_curve_ =======================================================================
class Snapshots(fastnn.Callback):
    def __init__(self):
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(([c.copy() for c in self.model.coefs_], [b.copy() for b in self.model.intercepts_]))
        self.logs = getattr(self, "logs", []) + [dict(logs)]


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_validation_loss_curve_is_the_objective_on_scikit_learns_validation_split(kind):
    X, y = data(kind, n=60)
    alpha, seed, hidden = 0.5, 7, (5,)
    snap = Snapshots()
    cls = MLPClassifier if kind == "multiclass" else MLPRegressor
    est = cls(hidden_layer_sizes=hidden, alpha=alpha, early_stopping=True, validation_fraction=0.2,
              max_iter=4, random_state=seed, callbacks=[snap], **QUIET).fit(X, y)
    n_out = 3 if kind == "multiclass" else 1
    *_, rs = glorot([D, *hidden, n_out], ["relu"], seed)  # the split draws after the weights
    Y = onehot(y) if kind == "multiclass" else y[:, None]
    _, X_val, _, Y_val = train_test_split(X, Y, random_state=rs, test_size=0.2)
    assert len(est.validation_loss_curve_) == len(snap.weights) == 4
    for got, (Ws, bs), logs in zip(est.validation_loss_curve_, snap.weights, snap.logs):
        want = objective_and_gradient(X_val, Y_val, Ws, bs, ["relu"],
                                      "softmax" if kind == "multiclass" else "identity", alpha)[0]
        assert got == pytest.approx(want, rel=1e-10)
        # the callbacks see them too (they saw no val_* before): the objective and the score
        assert logs["val_loss"] == pytest.approx(want, rel=1e-10)
        P = forward(X_val, Ws, bs, ["relu"], "softmax" if kind == "multiclass" else "identity")[1][-1]
        if kind == "multiclass":
            assert logs["val_accuracy"] == pytest.approx(np.mean(P.argmax(1) == Y_val.argmax(1)), abs=1e-12)
        else:
            r2 = 1 - ((Y_val - P) ** 2).sum() / ((Y_val - Y_val.mean()) ** 2).sum()
            assert logs["val_r2"] == pytest.approx(r2, rel=1e-9)
    assert est.history_["val_loss"] == est.validation_loss_curve_
    assert est.history_["val_accuracy" if kind == "multiclass" else "val_r2"] == est.validation_scores_


def test_outputs_have_scikit_learns_dtype_for_either_input_dtype():
    """Defect: a model fitted on float32 answered float64 X in float32, where scikit-learn answers
    in float64."""
    X, y = data()
    X32 = X.astype(np.float32)
    for ours, theirs in ((MLPClassifier((5,), max_iter=2, random_state=0), skn.MLPClassifier((5,), max_iter=2, random_state=0)),
                         (MLPRegressor(hidden_layer_sizes=(5,), max_iter=2, random_state=0),
                          skn.MLPRegressor(hidden_layer_sizes=(5,), max_iter=2, random_state=0))):
        target = y if is_classifier_like(ours) else X[:, 0] * 2.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ours.fit(X32, target)
            theirs.fit(X32, target)
        for Xin in (X32, X, X.astype(np.int64)):
            for method in ("predict_proba", "predict") if is_classifier_like(ours) else ("predict",):
                got, want = getattr(ours, method)(Xin), getattr(theirs, method)(Xin)
                assert got.dtype == want.dtype, (type(ours).__name__, method, Xin.dtype, got.dtype, want.dtype)


def is_classifier_like(est):
    return hasattr(est, "predict_proba")


@pytest.mark.parametrize("monitor, early", [("val_r2", True), ("loss", False)])
def test_reduce_lr_on_plateau_inside_an_estimator_compounds(monitor, early):
    """Defect: scikit-learn's bookkeeping set model.lr_scale from its own rate every epoch, undoing
    the callback's reduction of the epoch before: the rate went 1e-3, 1e-3, 5e-4, 1e-3, 5e-4, ..."""
    X, y = data("regression", n=120)
    cb = fastnn.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=0, min_delta=1e9)  # never improves
    est = MLPRegressor(hidden_layer_sizes=(4,), max_iter=6, random_state=0, early_stopping=early,
                       callbacks=[cb], **QUIET).fit(X, y)
    np.testing.assert_allclose(est.history_["lr"], [1e-3, 1e-3, 5e-4, 2.5e-4, 1.25e-4, 6.25e-5], rtol=1e-12)
    # with scikit-learn's own schedule (SGD, invscaling) the two multiply
    est = MLPRegressor(hidden_layer_sizes=(4,), solver="sgd", learning_rate="invscaling", max_iter=4,
                       random_state=0, callbacks=[fastnn.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0,
                                                                          min_delta=1e9)], **QUIET).fit(X, y)
    n = 120  # rows per epoch (scikit-learn's t_ counts samples)
    want = [0.001 / (t * n + 1) ** 0.5 * 0.5 ** max(0, t - 1) for t in range(4)]
    np.testing.assert_allclose(est.history_["lr"], want, rtol=1e-6)


def test_an_lbfgs_fit_holds_its_model_against_other_threads(monkeypatch):
    """Defect: L-BFGS ran without holding the model, so another thread's set_weights (or
    coefs_[i] = W) was accepted, then overwritten by scipy's next iterate."""
    import scipy.optimize
    X, y = data()
    est = MLPClassifier((5,), solver="lbfgs", max_iter=5, random_state=0)
    seen = []
    minimize = scipy.optimize.minimize

    def watched(*args, **kwargs):
        seen.append(outcome_in_thread(lambda: est.model_.set_weights(est.model_.get_weights())))
        return minimize(*args, **kwargs)

    monkeypatch.setattr(scipy.optimize, "minimize", watched)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    assert seen == ["cannot set the weights: this model is being trained in another thread"]
    est.model_.set_weights(est.model_.get_weights())  # released afterwards


def test_partial_fit_keeps_its_optimizers_rate_whatever_set_params_says():
    """scikit-learn keeps its optimizer (and its learning_rate_init) across partial_fit calls."""
    X, y = data("binary")
    for schedule in ("invscaling", "constant", "adaptive"):
        kw = dict(hidden_layer_sizes=(5,), solver="sgd", learning_rate=schedule, learning_rate_init=0.01,
                  random_state=0)
        sk, fn = skn.MLPClassifier(**kw), MLPClassifier(**kw)
        for i in range(4):
            if i == 2:
                sk.set_params(learning_rate_init=0.1)
                fn.set_params(learning_rate_init=0.1)
            sk.partial_fit(X, y, classes=np.unique(y))
            fn.partial_fit(X, y, classes=np.unique(y))
        assert fn._learning_rate == sk._optimizer.learning_rate, schedule
        assert fn.model_.lr_scale * fn.model_.optimizer.lr == pytest.approx(sk._optimizer.learning_rate, rel=1e-15)
        for a, b in zip(fn.coefs_ + fn.intercepts_, sk.coefs_ + sk.intercepts_):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("solver, before, change", [
    ("sgd", {"learning_rate": "invscaling"}, {"learning_rate": "constant"}),
    ("sgd", {"learning_rate": "invscaling"}, {"power_t": 0.9}),
    ("sgd", {"learning_rate": "adaptive", "n_iter_no_change": 1, "tol": 1e9}, {"learning_rate": "invscaling"}),
    ("sgd", {"momentum": 0.9}, {"momentum": 0.1, "nesterovs_momentum": False}),
    ("sgd", {"learning_rate": "invscaling"}, {"solver": "adam"}),
    ("adam", {}, {"beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3}),
    ("adam", {}, {"solver": "sgd"}),
    ("adam", {}, {"alpha": 0.5}),
    ("sgd", {"alpha": 0.3}, {"alpha": 1e-5}),
])
def test_partial_fit_after_set_params_goes_on_as_scikit_learn_does(solver, before, change):
    """scikit-learn's partial_fit keeps the optimizer its first call made (solver, schedule,
    power_t, momentum, betas) whatever set_params says since, but reads alpha afresh for every
    batch; to_sklearn hands that optimizer over, and scikit-learn's partial_fit then goes on alike."""
    X, y = data("binary")
    kw = dict(hidden_layer_sizes=(5,), solver=solver, random_state=0, batch_size=40, **before)
    sk, fn = skn.MLPClassifier(**kw), MLPClassifier(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in (sk, fn):
            est.partial_fit(X, y, classes=np.unique(y))
            est.set_params(**change)
        taken = MLPClassifier.from_sklearn(sk)  # scikit-learn's optimizer, as it is kept
        for est in (sk, fn, taken):
            est.partial_fit(X, y)
            est.partial_fit(X, y)
        for other in (fn, taken):
            for a, b in zip(other.coefs_ + other.intercepts_, sk.coefs_ + sk.intercepts_):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        assert fn.loss_ == pytest.approx(sk.loss_, rel=1e-10)
        back = fn.to_sklearn()
        for est in (sk, back):
            est.partial_fit(X, y)
        for a, b in zip(back.coefs_ + back.intercepts_, sk.coefs_ + sk.intercepts_):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_a_callbacks_rate_factor_goes_to_scikit_learn_and_back():
    X, y = data("binary")
    for solver in ("sgd", "adam"):
        est = MLPClassifier((5,), solver=solver, random_state=0)
        cb = fastnn.ReduceLROnPlateau(monitor="loss", factor=0.1, patience=0, min_delta=1e9)
        est.set_params(callbacks=[cb])
        for _ in range(3):
            est.partial_fit(X, y, classes=np.unique(y))
        assert est.model_.lr_scale == pytest.approx(0.01)
        sk = est.to_sklearn()
        rate = sk._optimizer.learning_rate if solver == "sgd" else sk._optimizer.learning_rate_init
        assert rate == pytest.approx(1e-3 * 0.01)
        back = MLPClassifier.from_sklearn(sk)
        assert back.model_.lr_scale == pytest.approx(0.01)
        est.set_params(callbacks=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            sk.partial_fit(X, y)
        back.partial_fit(X, y)
        for a, b in zip(back.coefs_ + back.intercepts_, sk.coefs_ + sk.intercepts_):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_a_regressors_callbacks_may_watch_its_validation_r2():
    X, y = data("regression", n=120)
    stop = fastnn.EarlyStopping(monitor="val_r2", patience=1)
    est = MLPRegressor(hidden_layer_sizes=(5,), early_stopping=True, max_iter=200, learning_rate_init=0.05, random_state=0,
                       callbacks=[stop], **QUIET).fit(X, y)
    r2 = est.validation_scores_
    assert est.history_.stopped_early and est.n_iter_ < 200
    # larger is better: every epoch improved on the one before, until the first that did not
    assert all(b > a for a, b in zip(r2[:-2], r2[1:-1])) and r2[-1] <= r2[-2]


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_the_estimators_have_docstrings_with_their_parameters(cls):
    """Defect: the docstring was an expression (a string + _EXTRA_DOC), so __doc__ was None."""
    doc = cls.__doc__
    for name in ("dropout", "batch_norm", "n_threads", "callbacks", "hidden_layer_sizes", "early_stopping",
                 "validation_fraction", "coefs_", "loss_curve_"):
        assert name in doc, name
    assert doc.startswith(f"scikit-learn's {cls.__name__}")


def test_multi_label_val_accuracy_counts_labels_as_the_training_accuracy_does():
    """Defect: val_accuracy was scikit-learn's subset accuracy (a row right only when all its
    labels are) beside the engine's per-label training accuracy: 0.075 against 0.54."""
    X, _ = data(n=100)
    Y = np.stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 2] > 0.3], axis=1).astype(int)
    snap = Snapshots()
    est = MLPClassifier((5,), early_stopping=True, validation_fraction=0.2, max_iter=3, random_state=7,
                        callbacks=[snap], **QUIET).fit(X, Y)
    *_, rs = glorot([D, 5, 3], ["relu"], 7)  # the split draws after the weights
    _, X_val, _, Y_val = train_test_split(X, Y, random_state=rs, test_size=0.2)
    for (Ws, bs), logs, subset in zip(snap.weights, snap.logs, est.validation_scores_):
        P = expit(forward(X_val, Ws, bs, ["relu"], "identity")[1][-1])
        assert logs["val_accuracy"] == pytest.approx(np.mean((P > 0.5) == Y_val), abs=1e-12)
        assert subset == pytest.approx(np.mean(((P > 0.5) == Y_val).all(axis=1)), abs=1e-12)


def test_early_stopping_on_val_loss_works_inside_an_estimator():
    """Defect: with early_stopping=True, EarlyStopping(monitor='val_loss') warned that val_loss was
    not among the logs, and did nothing."""
    X, y = data(n=120)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        est = MLPClassifier((5,), early_stopping=True, max_iter=60, learning_rate_init=0.3, random_state=0,
                            callbacks=[fastnn.EarlyStopping(monitor="val_loss", patience=0)], **QUIET).fit(X, y)
    losses = est.validation_loss_curve_
    assert est.n_iter_ < 60 and est.history_.stopped_early
    assert losses[-1] >= min(losses[:-1])  # stopped at the first epoch that did not improve
    assert all(b < a for a, b in zip(losses[:-2], losses[1:-1]))


# == the optimizers' alpha in the model API ========================================================
def _first_step(opt, p, g, lr):
    """The first update of each optimizer from zero state, by hand."""
    if isinstance(opt, SklearnSGD):  # v = -lr g; Nesterov: p += mu v - lr g
        return p - lr * g * (1 + opt.momentum if opt.nesterov else 1)
    if isinstance(opt, SGD):  # PyTorch's: v = g; Nesterov: p -= lr (g + mu v)
        return p - lr * g * (1 + opt.momentum if opt.nesterov else 1)
    if isinstance(opt, SklearnAdam):  # bias corrections in the rate, eps outside
        lr_t = lr * np.sqrt(1 - opt.beta2) / (1 - opt.beta1)
        return p - lr_t * (1 - opt.beta1) * g / (np.sqrt((1 - opt.beta2) * g * g) + opt.eps)
    if isinstance(opt, Adam):
        return p - lr * g / (np.abs(g) + opt.eps)
    return p - lr * g / (np.sqrt((1 - opt.rho) * g * g) + opt.eps)


OPTIMIZERS = [SGD(lr=0.1, alpha=0.7), SGD(lr=0.1, momentum=0.5, nesterov=True, alpha=0.7),
              SklearnSGD(lr=0.1, momentum=0.5, nesterov=True, alpha=0.7),
              Adam(lr=0.1, eps=0.5, alpha=0.7), SklearnAdam(lr=0.1, eps=0.5, beta2=0.9, alpha=0.7),
              RMSprop(lr=0.1, eps=0.5, alpha=0.7)]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=repr)
def test_alpha_adds_its_l2_term_per_batch_weight_sum(opt, weighted):
    """One step of a linear model on mean squared error: the loss gains 0.5 alpha |W|^2 / S and the
    kernel's gradient alpha W / S (S: the batch's weight sum), the bias neither."""
    rng = np.random.default_rng(1)
    X, T = rng.standard_normal((10, 3)), rng.standard_normal((10, 2))
    sw = rng.uniform(0.2, 3.0, 10) if weighted else None
    m = fastnn.Sequential([Dense(2)], dtype="float64", seed=3).compile(opt, "mse")
    m.build(3)
    W, b = m.coefs_[0].copy(), m.intercepts_[0].copy()
    w = np.ones(10) if sw is None else sw
    S = w.sum()
    R = X @ W + b - T
    loss = float(w @ (R ** 2).mean(1)) / S + 0.5 * 0.7 * (W ** 2).sum() / S
    dZ = R * (w / S)[:, None]  # the mean of R^2 over 2 outputs: gradient 2 R / 2
    assert m.train_on_batch(X, T, sample_weight=sw) == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(m.coefs_[0], _first_step(opt, W, X.T @ dZ + 0.7 * W / S, 0.1), rtol=1e-12)
    np.testing.assert_allclose(m.intercepts_[0], _first_step(opt, b, dZ.sum(0), 0.1), rtol=1e-12)


# == Sequential.fit(shuffle=callable) ==============================================================
def _linear():
    m = fastnn.Sequential([Dense(2)], dtype="float64", seed=0).compile(SGD(lr=0.05), "mse")
    return m.build(3)


@pytest.mark.parametrize("order, match", [
    (np.arange(9), r"1-D array of 10 row indices, got shape \(9,\)"),
    (np.arange(10)[None], r"1-D array of 10 row indices, got shape \(1, 10\)"),
    (None, r"1-D array of 10 row indices, got shape \(\)"),
    (np.arange(10.0), "must hold integers, not float64"),
    (np.ones(10, bool), "must hold integers, not bool"),
    (np.arange(10) - 1, r"holds -1 at position 0: every entry must be a row index in \[0, 10\)"),
    (np.r_[np.arange(9), 10], r"holds 10 at position 9"),
    (np.full(10, 2 ** 64 - 1, np.uint64), "holds 18446744073709551615 at position 0")])
def test_a_bad_epoch_order_is_a_clear_value_error_and_changes_nothing(order, match):
    m = _linear()
    before = m.get_weights()
    X, T = np.ones((10, 3)), np.zeros((10, 2))
    with pytest.raises(ValueError, match=match):
        m.fit(X, T, shuffle=lambda epoch: order)
    for a, b in zip(m.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="'shuffle' parameter of fit must be"):
        m.fit(X, T, shuffle=1)


def test_the_given_epoch_order_is_the_order_of_the_steps():
    """batch_size=1 SGD: each epoch's steps follow the caller's order (rows may repeat), computed
    by hand step by step; the callable sees the epoch numbers."""
    rng = np.random.default_rng(2)
    X, T = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    orders = [np.array([3, 0, 5, 1, 4, 2]), np.array([2, 2, 0, 0, 5, 5])]
    seen = []

    def order(epoch):
        seen.append(epoch)
        return list(orders[epoch])  # any integer sequence; a list too

    m = _linear()
    W, b = m.coefs_[0].copy(), m.intercepts_[0].copy()
    m.fit(X, T, epochs=2, batch_size=1, shuffle=order)
    for o in orders:
        for i in o:
            r = X[i] @ W + b - T[i]  # mse over 2 outputs: gradient 2 r / 2
            W, b = W - 0.05 * np.outer(X[i], r), b - 0.05 * r
    assert seen == [0, 1]
    np.testing.assert_allclose(m.coefs_[0], W, rtol=1e-12)
    np.testing.assert_allclose(m.intercepts_[0], b, rtol=1e-12)


# == verbose ======================================================================================
VERBOSE = dict(hidden_layer_sizes=(6,), max_iter=30, random_state=0, verbose=True, tol=1e-2,
               n_iter_no_change=2, learning_rate_init=0.003)


def _verbose_fit(cls):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls(**VERBOSE).fit(X, (X[:, 0] > 0).astype(int))


def _sklearns_lines():
    import io
    from contextlib import redirect_stdout
    buf = io.StringIO()
    with redirect_stdout(buf):
        _verbose_fit(skn.MLPClassifier)
    return buf.getvalue()


def test_verbose_when_stdout_is_not_a_terminal_prints_exactly_scikit_learns_lines(capsys):
    _verbose_fit(MLPClassifier)
    out = capsys.readouterr().out
    assert "\r" not in out and "Stopping." in out
    assert out == _sklearns_lines()


def test_verbose_on_a_terminal_draws_the_live_bar_and_ends_each_epoch_with_scikit_learns_line(monkeypatch):
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    chunks = []

    def read():
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal was closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    with os.fdopen(slave, "w") as tty:
        monkeypatch.setattr(sys, "stdout", tty)
        _verbose_fit(MLPClassifier)
        monkeypatch.undo()
    reader.join(30)
    os.close(master)
    lines = b"".join(chunks).decode().replace("\r\n", "\n").split("\n")
    want = _sklearns_lines().split("\n")
    assert [ln.split("\r")[-1] for ln in lines] == want  # what the terminal shows in the end
    epochs = [ln for ln in lines if "Iteration" in ln]
    assert len(epochs) == sum("Iteration" in w for w in want) > 2
    assert all(ln.startswith("\repoch ") and "/2  [" in ln for ln in epochs)  # each had its bar


# == hostile parameters ===========================================================================
BAD_PARAMS = [
    (dict(dropout=1.0), "'dropout' parameter"), (dict(dropout=-0.1), "'dropout' parameter"),
    (dict(dropout=np.nan), "'dropout' parameter"), (dict(dropout="0.5"), "'dropout' parameter"),
    (dict(dropout=np.array([0.1])), "'dropout' parameter"),
    (dict(dropout=[0.1, 0.2]), r"dropout must be one value or a list of one per hidden layer \(1\), got 2"),
    (dict(dropout=[]), "got 0"), (dict(dropout=[1.0]), "rate in \\[0, 1\\)"),
    (dict(dropout=[True]), "Got True"), (dict(dropout=[None]), "Got None"), (dict(dropout=[[0.1]]), "Got \\[0.1\\]"),
    (dict(batch_norm="yes"), "'batch_norm' parameter"), (dict(batch_norm=1), "'batch_norm' parameter"),
    (dict(activation="softmax"), "'activation' parameter"), (dict(activation="LEAKY_RELU"), "'activation' parameter"),
    (dict(activation=["relu", "softplus"], hidden_layer_sizes=(3, 3)), "Got 'softplus'"),
    (dict(activation=["relu"] * 3, hidden_layer_sizes=(3, 3)), "activation must be one value or a list"),
    (dict(activation=[{}]), "Got {}"), (dict(activation=np.array(["relu"])), "'activation' parameter"),
    (dict(solver="ADAMW"), "'solver' parameter"), (dict(class_weight="bal"), "'class_weight' parameter"),
    (dict(class_weight=[1, 2, 3]), "'class_weight' parameter"), (dict(class_weight={7: 2.0}), "not in class_weight"),
    (dict(dtype="float16"), "'dtype' parameter"), (dict(dtype=np.float32), "'dtype' parameter"),
    (dict(callbacks=(fastnn.EarlyStopping(),)), "'callbacks' parameter"),
    (dict(callbacks=fastnn.EarlyStopping()), "'callbacks' parameter"),
    (dict(callbacks=[1]), "callbacks must be fastnn Callback instances"),
    (dict(callbacks=[fastnn.Callback]), "callbacks must be fastnn Callback instances"),
    (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes must be > 0"),
]


@pytest.mark.parametrize("params, match", BAD_PARAMS, ids=lambda v: repr(v)[:40] if isinstance(v, dict) else "")
def test_a_bad_extra_parameter_is_a_clear_error_before_anything_is_built(params, match):
    X, y = np.random.default_rng(0).standard_normal((30, 4)), np.arange(30) % 3
    est = MLPClassifier(max_iter=1, **{"hidden_layer_sizes": (3,), **params})
    with pytest.raises((ValueError, TypeError), match=match):
        est.fit(X, y)
    assert "model_" not in est.__dict__


@pytest.mark.parametrize("hidden", [(2 ** 40,), (10 ** 6, 10 ** 6), (2 ** 63 - 1,)])
def test_huge_hidden_layers_are_a_memory_or_value_error(hidden):
    X, y = data("binary")
    with pytest.raises((MemoryError, ValueError)):
        MLPClassifier(hidden, max_iter=1).fit(X, y)


def test_a_network_the_engine_cannot_allocate_is_a_memory_error():
    code = ("import resource, numpy as np, warnings\n"
            "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
            "from fastnn.neural_network import MLPClassifier\n"
            "X = np.random.default_rng(0).standard_normal((400, 4))\n"
            "try:\n    MLPClassifier((2000000,), max_iter=1).fit(X, np.arange(400) % 3)\n"
            "except MemoryError as e:\n    print('MemoryError', e)\n")
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=tempfile.gettempdir(), env=env)
    assert out.returncode == 0 and out.stdout.startswith("MemoryError"), out.stdout + out.stderr


def test_assigning_coefs_and_intercepts_checks_them_all_or_nothing():
    X, y = data()
    est = MLPClassifier((5,), max_iter=2, random_state=0).fit(X, y)
    before = [a.copy() for a in est.coefs_ + est.intercepts_]
    P = est.predict_proba(X)
    bad = [([np.zeros((3, 5)), est.coefs_[1]], ValueError, r"has shape \(4, 5\), got \(3, 5\)"),
           ([np.full((4, 5), np.nan), np.zeros((5, 3))], ValueError, "NaN or infinite"),
           ([est.coefs_[0]], ValueError, "expected 2 arrays, got 1"),
           (est.coefs_ * 2, ValueError, "expected 2 arrays, got 4"),
           ([np.full((4, 5), "a"), est.coefs_[1]], TypeError, "must hold real numbers"),
           (None, TypeError, "not iterable")]
    for value, exc, match in bad:
        with pytest.raises(exc, match=match):
            est.coefs_ = value
    with pytest.raises(ValueError, match="NaN or infinite"):
        est.intercepts_ = [np.zeros(5), np.array([0, np.inf, 0])]
    for got, want in zip(est.coefs_ + est.intercepts_, before):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(est.predict_proba(X), P)
    new = [np.full((4, 5), 0.1), np.full((5, 3), -0.2)]
    est.coefs_ = (w for w in new)  # any iterable
    np.testing.assert_allclose(est.predict_proba(X), forward(X, new, est.intercepts_, ["relu"], "softmax")[1][-1],
                               rtol=1e-12)
    with pytest.raises(AttributeError, match="not fitted"):
        MLPClassifier().coefs_ = new


def test_assigning_one_item_of_coefs_or_intercepts_changes_the_model_as_in_scikit_learn():
    """Defect: coefs_[0] = W went into a list made for that access and changed nothing."""
    X, y = data()
    ours = MLPClassifier((5, 4), max_iter=3, random_state=0).fit(X, y)
    theirs = skn.MLPClassifier((5, 4), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs.fit(X, y)
    rng = np.random.default_rng(1)
    W0, b2 = rng.standard_normal((4, 5)), rng.standard_normal(3)
    for est in (ours, theirs):
        est.coefs_[0] = W0
        est.intercepts_[-1] = b2
        est.coefs_[1:] = [np.zeros((5, 4)), est.coefs_[2]]  # a slice, as a list takes it
        est.intercepts_[0] += 1  # in place, through the view
    np.testing.assert_array_equal(ours.coefs_[0], W0)
    np.testing.assert_array_equal(ours.intercepts_[2], b2)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-9, atol=1e-12)
    # checked as the whole-list assignment is, and nothing written on a refusal
    before = [a.copy() for a in ours.coefs_]
    with pytest.raises(ValueError, match=r"has shape \(5, 4\), got \(4, 5\)"):
        ours.coefs_[1] = np.zeros((4, 5))
    with pytest.raises(ValueError, match="NaN or infinite"):
        ours.coefs_[-1] = np.full((4, 3), np.nan)
    with pytest.raises(ValueError, match="a slice of 2 given 1"):
        ours.coefs_[:2] = [W0]
    with pytest.raises(IndexError):
        ours.coefs_[3] = W0
    with pytest.raises(TypeError):
        ours.coefs_["0"] = W0
    for refused in (lambda c: c.append(W0), lambda c: c.pop(), lambda c: c.__delitem__(0),
                    lambda c: c.extend([W0]), lambda c: c.insert(0, W0), lambda c: c.clear(),
                    lambda c: c.sort(), lambda c: c.reverse(), lambda c: c.remove(c[0])):
        with pytest.raises(TypeError, match="one array per Dense layer"):
            refused(ours.coefs_)
    c = ours.coefs_
    with pytest.raises(TypeError, match="one array per Dense layer"):
        c += [W0]
    for got, want in zip(ours.coefs_, before):
        np.testing.assert_array_equal(got, want)
    # the list pickles and copies as a plain list of arrays, without the model
    for other in (pickle.loads(pickle.dumps(ours.coefs_)), copy.copy(ours.coefs_), copy.deepcopy(ours.coefs_)):
        assert type(other) is list and len(other) == 3
        for got, want in zip(other, before):
            np.testing.assert_array_equal(got, want)
    assert isinstance(ours.coefs_, list) and len(ours.coefs_ + ours.intercepts_) == 6


def test_swapping_arrays_through_coefs_swaps_them():
    """Defect: the new values were written one by one from views of the same buffer, so a swap
    (c[0:2] = c[1::-1], est.coefs_ = [c[1], c[0]], set_weights of views) duplicated one array."""
    m = fastnn.Sequential([Dense(4), Dense(4), Dense(4)], seed=0)
    m.compile("sgd", loss="mse")
    m.build(4)
    W = [w.copy() for w in m.coefs_]
    c = m.coefs_
    c[0:2] = c[1::-1]
    np.testing.assert_array_equal(m.coefs_[0], W[1])
    np.testing.assert_array_equal(m.coefs_[1], W[0])
    m.intercepts_[1:] = [np.ones(4), np.full(4, 2.0)]
    m.intercepts_[1:] = m.intercepts_[:0:-1]
    np.testing.assert_array_equal(m.intercepts_[1], np.full(4, 2.0))
    np.testing.assert_array_equal(m.intercepts_[2], np.ones(4))
    views = [ly.kernel if "kernel" in ly.array_names() and k % 2 == 0 else ly.bias
             for ly in m.layers for k in range(2)]  # the layers' own views, in get_weights order
    m.set_weights([views[2], views[1], views[0], views[3], views[4], views[5]])
    np.testing.assert_array_equal(m.coefs_[0], W[0])
    np.testing.assert_array_equal(m.coefs_[1], W[1])


def test_coefs_item_assignment_refuses_overflow_and_masked_arrays_by_name():
    m = fastnn.Sequential([Dense(3), Dense(2)], seed=0)
    m.compile("sgd", loss="mse")
    m.build(4)
    before = m.get_weights()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy overflow warning on the way
        with pytest.raises(ValueError, match=r"Dense.kernel \(layer 0\) holds values beyond the range of float32"):
            m.coefs_[0] = np.full((4, 3), 1e300)
    with pytest.raises(TypeError, match=r"Dense.kernel \(layer 1\): a masked array is not taken; pass its .filled\(value\)"):
        m.coefs_[1] = np.ma.masked_array(np.zeros((3, 2)), mask=np.eye(3, 2, dtype=bool))
    for got, want in zip(m.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_a_sequentials_coefs_list_writes_through_counting_dense_layers_only():
    m = fastnn.Sequential([Dense(3, activation="relu"), BatchNorm(), Dense(2)], seed=0)
    m.compile("sgd", loss="mse")
    m.build(4)
    X = np.random.default_rng(0).standard_normal((6, 4))
    m.coefs_[1] = np.ones((3, 2))  # the second Dense layer, counting Dense layers only
    m.intercepts_[1] = np.array([0.5, -0.5])
    np.testing.assert_array_equal(m.get_weights()[6], np.ones((3, 2)))
    np.testing.assert_array_equal(m.get_weights()[7], [0.5, -0.5])
    np.testing.assert_array_equal(m.layers[2].kernel, np.ones((3, 2)))
    assert np.isfinite(m.predict(X)).all()


# == hostile use: re-entry, threads, changed parameters, copies ====================================
class Refit(fastnn.Callback):
    def __init__(self, est, how):
        self.est, self.how = est, how

    def on_epoch_end(self, epoch, logs=None):
        X, y = data()
        self.est.fit(X, y) if self.how == "fit" else self.est.partial_fit(X, y)


@pytest.mark.parametrize("how", ["fit", "partial_fit"])
def test_fitting_an_estimator_from_its_own_callback_is_refused(how):
    """Defect: fit from a callback rebuilt model_ and recursed until RecursionError."""
    X, y = data()
    est = MLPClassifier((5,), max_iter=3, random_state=0)
    est.set_params(callbacks=[Refit(est, how)])
    with pytest.raises(RuntimeError, match="its fit is already running"):
        est.fit(X, y)
    est.set_params(callbacks=None).fit(X, y)  # the estimator is usable again
    assert est.n_iter_ == 3


def test_two_threads_fitting_one_estimator_one_is_refused():
    """Defect: both fits ran, each on its own model_, interleaving n_iter_ and loss_curve_
    (n_iter_ 2 x max_iter)."""
    X, y = data()
    started, release = threading.Event(), threading.Event()

    class Hold(fastnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            started.set()
            release.wait(30)

    est = MLPClassifier((5,), max_iter=3, random_state=0, callbacks=[Hold()])
    errors = []
    t = threading.Thread(target=lambda: est.fit(X, y))
    t.start()
    assert started.wait(30)
    try:
        est.fit(X, y)
    except RuntimeError as exc:
        errors.append(str(exc))
    finally:
        release.set()
        t.join(60)
    assert len(errors) == 1 and "already running" in errors[0]
    assert est.n_iter_ == len(est.loss_curve_) == 3


def test_predict_in_another_thread_while_fitting():
    X, y = data()
    est = MLPClassifier((32,), max_iter=2, random_state=0).fit(X, y)
    results, stop = [], threading.Event()

    def predict():
        while not stop.is_set():
            results.append(est.predict_proba(X[:5]).shape)

    t = threading.Thread(target=predict)
    t.start()
    try:
        est.set_params(max_iter=40, warm_start=True, batch_size=1).fit(X, y)
    finally:
        stop.set()
        t.join(30)
    assert results and set(results) == {(5, 3)}


class ChangeParams(fastnn.Callback):
    def __init__(self, est):
        self.est = est

    def on_epoch_end(self, epoch, logs=None):
        self.est.set_params(learning_rate_init=0.0, tol="x", max_iter=1, verbose=True, alpha=-1.0,
                            solver="sgd", learning_rate="invscaling", hidden_layer_sizes=(50,))


def test_set_params_from_a_callback_applies_to_the_next_fit(capsys):
    """Defect: the epoch rule read the parameters live: learning_rate_init=0 mid-fit divided by
    zero, tol='x' raised TypeError, verbose printed half the epochs."""
    X, y = data()
    params = dict(hidden_layer_sizes=(5,), max_iter=3, random_state=0, **QUIET)
    est = MLPClassifier(**params)
    est.set_params(callbacks=[ChangeParams(est)]).fit(X, y)
    ref = MLPClassifier(**params).fit(X, y)
    assert est.n_iter_ == 3 and capsys.readouterr().out == ""
    assert_weights(est, ref.coefs_, ref.intercepts_, rtol=0, atol=0)
    assert est.get_params()["learning_rate_init"] == 0.0
    with pytest.raises(ValueError, match="parameter of MLPClassifier must be"):
        est.fit(X, y)  # the next fit validates them


@pytest.mark.parametrize("change", [dict(hidden_layer_sizes=(7, 3)), dict(hidden_layer_sizes=(6,)),
                                    dict(dropout=0.5), dict(batch_norm=True), dict(activation="tanh"),
                                    dict(activation=["tanh"]), dict(dtype="float32")], ids=repr)
@pytest.mark.parametrize("how", ["warm_start", "partial_fit"])
def test_continuing_a_fit_with_another_network_is_refused(change, how):
    """Defect: warm_start and partial_fit silently kept training the old network while
    get_params described another one."""
    X, y = data()
    est = MLPClassifier((5,), max_iter=2, random_state=0, warm_start=how == "warm_start").fit(X, y)
    est.set_params(**change)
    with pytest.raises(ValueError, match="changed since its network was built"):
        est.fit(X, y) if how == "warm_start" else est.partial_fit(X, y)
    assert [c.shape for c in est.coefs_] == [(4, 5), (5, 3)]


def test_continuing_a_fit_with_the_same_network_works():
    X, y = data()
    est = MLPClassifier(np.array([5]), activation=["tanh"], dropout=[0.2], batch_norm=True,
                        max_iter=2, random_state=0, warm_start=True).fit(X, y)
    est.set_params(hidden_layer_sizes=[5], dropout=0.2, activation="tanh", solver="adamw").fit(X, y)
    est.partial_fit(X.astype(np.float32), y)
    assert est.n_iter_ == 1 and len(est.loss_curve_) == 5


def test_partial_fit_with_new_widths_is_refused_and_changes_nothing():
    X, y = data("regression")
    est = MLPRegressor(hidden_layer_sizes=(5,), random_state=0).partial_fit(X, y)
    with pytest.raises(ValueError, match="y 2 outputs, but this model was fitted with 4 and 1"):
        est.partial_fit(X, np.c_[y, y])
    assert est.n_outputs_ == 1  # defect: it became 2
    with pytest.raises(ValueError, match="3 features"):
        est.partial_fit(X[:, :3], y)
    assert est.predict(X).shape == (N,)


def test_fitted_estimators_with_callbacks_pickle_clone_and_deepcopy():
    X, y = data()
    params = dict(hidden_layer_sizes=(5,), max_iter=3, random_state=0, **QUIET)
    est = MLPClassifier(callbacks=[Recorder(), fastnn.EarlyStopping(monitor="loss", restore_best_weights=True)],
                        **params).fit(X, y)
    P = est.predict_proba(X)
    for twin in (pickle.loads(pickle.dumps(est)), copy.deepcopy(est)):
        np.testing.assert_array_equal(twin.predict_proba(X), P)
        assert twin.callbacks[0] is not est.callbacks[0] and len(twin.callbacks[0].calls) == 5
        assert twin.callbacks[0].model is None or twin.callbacks[0].model is twin.model_
        twin.fit(X, y)
        np.testing.assert_array_equal(twin.predict_proba(X), P)
    fresh = clone(est)
    assert "model_" not in fresh.__dict__ and fresh.callbacks[1] is not est.callbacks[1]
    np.testing.assert_array_equal(fresh.fit(X, y).predict_proba(X), P)


# == hostile data =================================================================================
@pytest.mark.parametrize("X_bad, match", [
    (np.zeros((0, 4)), "0 sample"), (np.zeros((30, 0)), "0 feature"),
    (np.where(np.eye(30, 4) > 0, np.nan, 1.0), "NaN"), (np.where(np.eye(30, 4) > 0, np.inf, 1.0), "infinity"),
    (np.full((30, 4), "a", dtype=object), "could not convert"), (np.ones((30, 4), complex), "Complex"),
    (np.ones((30, 4, 1)), "dim 3")])
def test_bad_X_is_a_clear_value_error(X_bad, match):
    y = np.arange(len(X_bad)) % 3
    for est in (MLPClassifier(max_iter=1, dropout=0.2, batch_norm=True), MLPRegressor(max_iter=1, dtype="float32")):
        with pytest.raises(ValueError, match=match):
            est.fit(X_bad, y)


def _error_of(call):
    """(exception type, message, whether it chains another exception, warnings issued), None for the
    exception parts when the call returns."""
    with warnings.catch_warnings(record=True) as issued:
        warnings.simplefilter("always")
        try:
            call()
        except (ValueError, TypeError) as exc:
            return type(exc), str(exc), exc.__context__ is not None, [str(w.message) for w in issued]
    return None, None, False, [str(w.message) for w in issued]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinity_in_X_raise_scikit_learns_own_error(bad):
    """fastnn checks X for NaN and infinity itself (compiled: faster than validate_data's NumPy
    sum), and raises scikit-learn's error, word for word, from fit, partial_fit and every
    prediction, dense or sparse, float32 or float64, with the NaN or infinity in the last row
    (X large enough for the backend's check rather than NumPy's: validation._SMALL)."""
    import scipy.sparse
    from fastnn._engine import validation
    rng = np.random.default_rng(0)
    X = rng.standard_normal((validation._SMALL // 6 + 100, 6))
    y = np.arange(len(X)) % 3
    Xb = X.copy()
    Xb[-1, 4] = bad
    for ours, theirs in ((MLPClassifier, skn.MLPClassifier), (MLPRegressor, skn.MLPRegressor)):
        fitted = [cls(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X, y) for cls in (ours, theirs)]
        for form in (np.asarray, scipy.sparse.csr_matrix, scipy.sparse.csc_matrix):
            for dtype in (np.float64, np.float32):
                Xf = form(Xb.astype(dtype))
                calls = {"fit": lambda e: clone(e).fit(Xf, y), "partial_fit": lambda e: e.partial_fit(Xf, y),
                         "predict": lambda e: e.predict(Xf), "score": lambda e: e.score(Xf, y)}
                if ours is MLPClassifier:
                    calls["predict_proba"] = lambda e: e.predict_proba(Xf)
                for name, call in calls.items():
                    got, want = (_error_of(lambda: call(copy.deepcopy(e))) for e in fitted)
                    assert want[0] is ValueError and ("NaN" in want[1]) == (bad != bad)
                    assert got == want, (ours.__name__, name, form.__name__, dtype)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_fit_reads_a_large_X_for_nan_once(monkeypatch, dtype):
    """fit and partial_fit check a large float X (the backend's whole-array check) once: the model
    below is handed X as it was found finite, not checked again (4-5 ms of a 3-epoch MNIST fit);
    a Sequential's own fit still checks it."""
    from fastnn import neural_network
    from fastnn._engine import validation
    seen = []
    real = validation._all_finite

    def counted(arr):
        if arr.size > validation._SMALL:
            seen.append(arr.shape)
        return real(arr)
    monkeypatch.setattr(validation, "_all_finite", counted)
    monkeypatch.setattr(neural_network, "_all_finite", counted)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((validation._SMALL // 6 + 100, 6)).astype(dtype)
    y = np.arange(len(X)) % 3
    est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0).fit(X, y)
    assert seen == [X.shape]
    est.partial_fit(X, y)
    assert seen == [X.shape] * 2
    X[-1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.partial_fit(X, y)
    with pytest.raises(ValueError, match="NaN"):
        est.model_.fit(X, y)
    # a caller's finite X converted on the way (float64 into float32) is checked all the same
    with pytest.raises(ValueError, match="beyond the range of float32"):
        validation.check_matrix(np.full((3, 2), 1e39), "X", np.float32, finite=True)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_nan_in_X_is_refused_before_anything_else_and_changes_nothing():
    """scikit-learn looks for NaN and infinity in X before it records X's width or checks y: a
    refused fit of a fitted estimator leaves n_features_in_ as it was (the estimator still predicts
    its own data), and NaN beside another problem (another width, NaN in y, fewer labels) is
    reported as NaN; an inf in float16 X is named with float16; a masked array's NaN (under its
    mask) and an np.matrix are refused as scikit-learn refuses them; a refusal of a DataFrame
    warns once about its feature names. As scikit-learn, word for word, with no chained error."""
    import pandas as pd
    from fastnn._engine import validation
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((40, 4)), np.arange(40) % 2
    X5 = rng.standard_normal((40, 5))
    X5[0, 0] = np.nan
    Xnan = X.copy()
    Xnan[3, 2] = np.nan
    ynan = y.astype(float)
    ynan[5] = np.nan
    X16 = X.astype(np.float16)
    X16[1, 1] = np.inf
    big = rng.standard_normal((validation._SMALL // 4 + 10, 4))  # the compiled check's size
    for ours, theirs in ((MLPClassifier, skn.MLPClassifier), (MLPRegressor, skn.MLPRegressor)):
        fitted = [cls(hidden_layer_sizes=(3,), max_iter=2, random_state=0).fit(X, y) for cls in (ours, theirs)]
        calls = {"refit, wider X": lambda e: e.fit(X5, y), "predict, wider X": lambda e: e.predict(X5),
                 "partial_fit, wider X": lambda e: e.partial_fit(X5, y), "fit, NaN in y": lambda e: e.fit(Xnan, ynan),
                 "fit, fewer labels": lambda e: e.fit(Xnan, y[:-1]), "predict, float16": lambda e: e.predict(X16),
                 "fresh fit, wider X": lambda e: clone(e).fit(X5, y),
                 "fit, masked": lambda e: clone(e).fit(np.ma.masked_invalid(Xnan), y),
                 "fit, np.matrix": lambda e: clone(e).fit(np.asmatrix(big), np.arange(len(big)) % 2),
                 "predict, DataFrame": lambda e: e.predict(pd.DataFrame(Xnan, columns=list("abcd"))),
                 "score, DataFrame, wider": lambda e: e.score(pd.DataFrame(X5, columns=list("abcde")), y)}
        for name, call in calls.items():
            got, want = (_error_of(lambda: call(e)) for e in fitted)
            assert want[0] is not None and got == want, (ours.__name__, name, got, want)
            assert fitted[0].n_features_in_ == fitted[1].n_features_in_ == 4, (ours.__name__, name)
        np.testing.assert_array_equal(fitted[0].predict(X), clone(fitted[0]).fit(X, y).predict(X))
        fresh = [cls(max_iter=2) for cls in (ours, theirs)]
        for e in fresh:
            _error_of(lambda: e.partial_fit(X5, y, **({"classes": [0, 1]} if is_classifier(e) else {})))
        assert not any(hasattr(e, "n_features_in_") for e in fresh)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_huge_values_in_float32_are_refused_before_training():
    X, y = data()
    with pytest.raises(ValueError, match="beyond the range of float32"):
        MLPClassifier(dtype="float32", max_iter=1).fit(X * 1e300, y)
    est = MLPClassifier(dtype="float32", max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="beyond the range of float32"):
        est.predict(X * 1e300)
    import scipy.sparse
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no NumPy overflow warning first
        for solver in ("adam", "lbfgs"):
            with pytest.raises(ValueError, match="beyond the range of float32"):
                MLPClassifier(dtype="float32", solver=solver, max_iter=1).fit(scipy.sparse.csr_matrix(X * 1e300), y)
        with pytest.raises(ValueError, match="y holds values beyond the range of float32"):
            MLPRegressor(dtype="float32", max_iter=1).fit(X, np.full(len(X), 1e300))


def test_one_class_and_one_sample_fit_like_scikit_learn():
    X, _ = data()
    for y in (np.zeros(N), np.full(N, "only")):
        fn = MLPClassifier((4,), class_weight="balanced", max_iter=2, random_state=0).fit(X, y)
        sk = skn.MLPClassifier((4,), max_iter=2, random_state=0).fit(X, y)
        np.testing.assert_array_equal(fn.predict(X), sk.predict(X))
        assert fn.predict_proba(X).shape == sk.predict_proba(X).shape
    one = MLPRegressor(hidden_layer_sizes=(4,), dropout=0.3, max_iter=2, random_state=0).fit(X[:1], [1.5])
    assert one.predict(X).shape == (N,)
    with pytest.raises(ValueError, match="BatchNorm needs at least 2 rows"):
        MLPRegressor(hidden_layer_sizes=(4,), batch_norm=True, max_iter=1).fit(X[:1], [1.5])
    # a last batch of one row is taken: 201 rows in batches of 200 (scikit-learn's 'auto')
    bn = MLPRegressor(hidden_layer_sizes=(4,), batch_norm=True, max_iter=2, random_state=0)
    assert np.isfinite(bn.fit(np.resize(X, (201, X.shape[1])), np.arange(201.0)).predict(X)).all()


def test_a_stochastic_fit_then_lbfgs_then_partial_fit_keeps_scikit_learns_books():
    """scikit-learn's lbfgs fit leaves the books of an earlier stochastic fit (loss_curve_ and the
    rest) as they were, and a later partial_fit appends to them; fastnn's lbfgs fit removed them,
    and that partial_fit raised AttributeError after its update (hostile pass helper-45). A fresh
    lbfgs fit still has none."""
    X, y = data("binary")
    books = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for cls in (skn.MLPClassifier, MLPClassifier):
            e = cls((5,), solver="sgd", random_state=0)
            e.partial_fit(X, y, classes=np.unique(y))
            e.set_params(solver="lbfgs", max_iter=5)
            e.fit(X, y)
            after_lbfgs = (len(e.loss_curve_), e.best_loss_, e._no_improvement_count)
            e.set_params(solver="sgd")
            e.partial_fit(X, y)
            books.append((after_lbfgs, e.n_iter_, len(e.loss_curve_), e.t_))
        (sk_after, *sk_rest), (fn_after, *fn_rest) = books
        assert sk_rest == fn_rest and sk_after[::2] == fn_after[::2]
        assert fn_after[1] == pytest.approx(sk_after[1], rel=1e-12)  # best_loss_ of the sgd epoch
        assert not hasattr(MLPClassifier((5,), solver="lbfgs", max_iter=5).fit(X, y), "loss_curve_")


@pytest.mark.parametrize("first, then", [("adam", "adam"), ("sgd", "sgd"), ("adam", "sgd")])
def test_partial_fit_after_an_lbfgs_refit_goes_on_with_the_kept_optimizer(first, then):
    """scikit-learn keeps its stochastic _optimizer through an lbfgs refit and a later partial_fit
    goes on with it (its kind, moments and step count), whatever solver says by then; fastnn started
    a fresh one (1.7e-3 apart; hostile check helper-46)."""
    X, y = data("binary")
    got = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for cls in (skn.MLPClassifier, MLPClassifier):
            e = cls((7,), solver=first, random_state=1, max_iter=4, momentum=0.9)
            e.partial_fit(X, y, classes=np.unique(y))
            e.set_params(solver="lbfgs")
            e.fit(X, y)
            e.set_params(solver=then)
            e.partial_fit(X, y)
            got.append(e)
    for a, b in zip(got[1].coefs_ + got[1].intercepts_, got[0].coefs_ + got[0].intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_an_invscaling_rate_that_underflows_to_zero_trains_on_as_scikit_learns():
    """learning_rate_init 1e-300 with power_t 30: the rate underflows to 0 after the first epoch;
    scikit-learn trains on at rate 0, fastnn raised ValueError for a learning-rate scale of 0
    (hostile pass helper-45)."""
    X, y = data("binary")
    kw = dict(hidden_layer_sizes=(5,), solver="sgd", learning_rate="invscaling", learning_rate_init=1e-300,
              power_t=30, random_state=0, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk, fn = skn.MLPClassifier(**kw).fit(X, y), MLPClassifier(**kw).fit(X, y)
    assert fn._learning_rate == sk._optimizer.learning_rate == 0.0 and fn.n_iter_ == sk.n_iter_ == 3
    for a, b in zip(fn.coefs_ + fn.intercepts_, sk.coefs_ + sk.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert fn.to_sklearn()._optimizer.learning_rate == 0.0  # and hands it over so


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("labels", [np.array([3, 7, 11, 20]), np.array([0, 1]), np.array([-4, 9]),
                                    np.array(["cat", "dog", "emu"]), np.array(["no", "yes"])],
                         ids=["int4", "int01", "int2", "str3", "str2"])
def test_partial_fit_encodes_known_labels_as_the_label_binarizer_does(labels):
    """A partial_fit's labels, all of them known, are encoded by a search in classes_ instead of
    LabelBinarizer.transform (its checks took most of a small batch's call): the same array, and
    the same model after several batches as scikit-learn's own partial_fit. Anything else (an
    unknown label, floats, objects, a 2-D y) goes to the binarizer: its result or its error."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 5))
    est = MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    sk = skn.MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    for e in (est, sk):
        e.partial_fit(X[:10], labels[np.arange(10) % len(labels)], classes=labels)
    lb = est._label_binarizer
    for dtype in ({"i": [np.int64, np.int32, np.int8], "U": [None]}[labels.dtype.kind]):
        for pick in (rng.integers(0, len(labels), 40), np.zeros(7, int), np.full(3, len(labels) - 1)):
            y = labels[pick] if dtype is None else labels[pick].astype(dtype)
            got = est._known_labels(y)
            want = lb.transform(y).astype(bool)
            assert got is not None and got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
    for other in (labels.astype(object), np.append(labels[:2], labels[:1]).reshape(-1, 1),
                  np.append(labels, labels[:1].astype(float)) if labels.dtype.kind == "i" else labels[::-1].tolist()):
        assert est._known_labels(other) is None
    # unknown labels past the last class and between two (the search lands on a neighbour)
    for new in ((99, 5) if labels.dtype.kind == "i" else ("zebra", "cow")):
        unknown = np.append(labels[:3], np.array([new], labels.dtype))
        assert est._known_labels(unknown) is None
    for e in (est, sk):
        with pytest.raises(ValueError, match="has classes not in"):
            e.partial_fit(X[:len(unknown)], unknown)
    for start in range(10, 60, 10):
        y = labels[rng.integers(0, len(labels), 10)]
        for e in (est, sk):
            e.partial_fit(X[start:start + 10], y)
    for a, b in zip(est.coefs_ + est.intercepts_, sk.coefs_ + sk.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_warm_start_refuses_other_classes_as_scikit_learn_does():
    """A warm-started fit whose y lacks a class (every label known) or brings a new one is refused
    with scikit-learn's error; one with the same classes goes on."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)), np.arange(40) % 4
    ests = [cls(hidden_layer_sizes=(3,), max_iter=2, warm_start=True, random_state=0).fit(X, y)
            for cls in (MLPClassifier, skn.MLPClassifier)]
    for y2 in (np.arange(40) % 3, np.arange(40) % 5):
        for call in ("fit", "partial_fit"):  # partial_fit too checks the classes under warm_start
            got, want = (_error_of(lambda: getattr(e, call)(X, y2)) for e in ests)
            assert want[0] is ValueError and "warm_start can only be used" in want[1]
            assert got[:2] == want[:2]
    for e in ests:
        e.fit(X, y[::-1].copy())
        e.partial_fit(X, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_partial_fit_checks_labels_against_classes_set_by_hand():
    """classes_ changed by hand after a first partial_fit (in place, or replaced) is what a later
    partial_fit checks y against, as scikit-learn's does."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 3)), np.arange(30) % 3
    for change in ("in place", "replaced"):
        ests = [cls(hidden_layer_sizes=(3,), random_state=0) for cls in (MLPClassifier, skn.MLPClassifier)]
        for e in ests:
            e.partial_fit(X, y, classes=[0, 1, 2])
            if change == "in place":
                e.classes_[2] = 7
            else:
                e.classes_ = np.array([0, 1])
        got, want = (_error_of(lambda: e.partial_fit(X, y)) for e in ests)
        assert want[0] is ValueError and "has classes not in" in want[1]
        assert got[:2] == want[:2]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_what_parameter_validation_is_told_to_skip_is_still_refused_downstream():
    """Under scikit-learn's skip_parameter_validation a seed RandomState refuses is refused by a
    later partial_fit whether or not it shuffles; under assume_finite, NaN in X is refused by
    fastnn's own check before training (scikit-learn trains into NaN weights)."""
    import sklearn
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 3)), np.arange(30) % 3
    for seed in (-1, 2**32, np.int64(-3)):
        for shuffle in (True, False):
            ests = [cls(hidden_layer_sizes=(3,), random_state=0, shuffle=shuffle)
                    for cls in (MLPClassifier, skn.MLPClassifier)]
            for e in ests:
                e.partial_fit(X, y, classes=[0, 1, 2])
                e.random_state = seed
            with sklearn.config_context(skip_parameter_validation=True):
                got, want = (_error_of(lambda: e.partial_fit(X, y)) for e in ests)
            assert want[0] is ValueError and "Seed must be between" in want[1]
            assert got[:2] == want[:2]
    Xb = X.copy()
    Xb[4, 1] = np.nan
    with sklearn.config_context(assume_finite=True):
        est = MLPClassifier(hidden_layer_sizes=(3,), random_state=0)
        with pytest.raises(ValueError, match="X contains 1 NaN or infinite value"):
            est.fit(Xb, y)
        est.partial_fit(X, y, classes=[0, 1, 2])
        before = [c.copy() for c in est.coefs_]
        with pytest.raises(ValueError, match="X contains 1 NaN or infinite value"):
            est.partial_fit(Xb, y)
        for a, b in zip(est.coefs_, before):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [1, 7, 300])
def test_epoch_orders_from_a_seed_are_scikit_learns(n):
    """The drop-in's epoch order (neural_network._Order) from an int seed, whose first order is
    kept between calls, equals the one from RandomState(seed), epoch after epoch, and each is
    scikit-learn's shuffle of the previous one."""
    from sklearn.utils import shuffle
    from fastnn.neural_network import _Order
    for _ in range(2):  # the second time from the kept first order
        seeded, drawn = _Order(n, 5), _Order(n, np.random.RandomState(5))
        rs, want = np.random.RandomState(5), np.arange(n)
        for epoch in range(3):
            want = shuffle(want, random_state=rs)
            np.testing.assert_array_equal(seeded(epoch), want)
            np.testing.assert_array_equal(drawn(epoch), want)
        _Order(n, 5)(0)[:] = -1  # the caller's to change: the kept first order stays as it was


def test_parameter_names_are_read_once_per_class_and_stay_right():
    """_get_param_names is kept per class (scikit-learn read __init__'s signature at every
    get_params and before every fit): the same names as BaseEstimator's, for a subclass with
    parameters of its own too, and a list the caller may change."""
    from sklearn.base import BaseEstimator

    class Wider(MLPClassifier):
        def __init__(self, extra=3, **kw):
            super().__init__(**kw)
            self.extra = extra

    for cls in (MLPClassifier, MLPRegressor, Wider):
        want = BaseEstimator._get_param_names.__func__(cls)
        got = cls._get_param_names()
        assert got == want and isinstance(got, list)
        got.append("junk")
        assert cls._get_param_names() == want
    assert "extra" in Wider._get_param_names() and Wider(extra=5).get_params()["extra"] == 5
    assert clone(Wider(extra=7, alpha=0.5)).get_params()["extra"] == 7

    def init(self, extra=3, more=4, **kw):  # __init__ replaced after its names were read
        MLPClassifier.__init__(self, **kw)
        self.extra, self.more = extra, more
    Wider.__init__ = init
    assert Wider._get_param_names() == ["extra", "more"]
    assert clone(Wider(more=9)).get_params()["more"] == 9


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_predictions_of_a_plain_array_skip_nothing_scikit_learn_checks():
    """predict and predict_proba of a plain float array of the fitted width leave validate_data
    out (it would return X as it is), and the labels are taken from classes_ directly; for every
    other X, and for a model fitted with feature names, scikit-learn's checks run: its errors and
    warnings, word for word, for an empty X, another width, NaN, 3-D X, a list, ints, float16 and
    a DataFrame either way; predict = classes_[argmax(predict_proba)] for multiclass and binary
    string labels."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4))
    for labels in (np.array(["ant", "bee", "cat"]), np.array(["no", "yes"])):
        y = labels[np.arange(40) % len(labels)]
        for names in (False, True):
            Xf = pd.DataFrame(X, columns=list("abcd")) if names else X
            ests = [cls(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit(Xf, y)
                    for cls in (MLPClassifier, skn.MLPClassifier)]
            ours = ests[0]
            for X2 in (X[:1], X[:7].astype(np.float32), np.asfortranarray(X[:5]), X[::2]):
                P = ours.predict_proba(X2)
                np.testing.assert_array_equal(ours.predict(X2), ours.classes_[P.argmax(axis=1)])
            bad = X[:3].copy()
            bad[1, 2] = np.nan
            for X2 in (X[:0], X[:, :3], bad, X[:2, :, None], X[:2].tolist(), X[:2].astype(int),
                       X[:2].astype(np.float16), pd.DataFrame(X[:2], columns=list("abcd")), X[:2]):
                for call in ("predict", "predict_proba"):
                    got, want = (_error_of(lambda: getattr(e, call)(X2)) for e in ests)
                    assert got[0] == want[0] and got[1] == want[1] and got[3] == want[3], (call, X2)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_predict_with_a_label_binarizer_edited_by_hand_answers_as_scikit_learn():
    """predict's direct look-up in classes_ is taken only for a fitted LabelBinarizer whose classes_
    is a plain non-empty 1-D ndarray; one edited by hand (classes_ a list, a tuple, a masked or
    empty array, 2-D; the binarizer unfitted or None) gives scikit-learn's result or error (helper-53)."""
    from sklearn.preprocessing import LabelBinarizer
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 4), np.array(["a", "b", "c"])[rng.randint(0, 3, 60)]
    sk = skn.MLPClassifier(hidden_layer_sizes=(5,), max_iter=20, random_state=0).fit(X, y)
    edits = [lambda lb: setattr(lb, "classes_", list(lb.classes_)),
             lambda lb: setattr(lb, "classes_", tuple(lb.classes_)),
             lambda lb: setattr(lb, "classes_", np.ma.masked_array(lb.classes_)),
             lambda lb: setattr(lb, "classes_", lb.classes_[:0]),
             lambda lb: setattr(lb, "classes_", np.stack([lb.classes_, lb.classes_], axis=1))]
    for edit in edits + ["unfitted", None]:
        got = []
        for est in (MLPClassifier.from_sklearn(sk), copy.deepcopy(sk)):
            if edit == "unfitted":
                est._label_binarizer = LabelBinarizer()
            elif edit is None:
                est._label_binarizer = None
            else:
                edit(est._label_binarizer)
            try:
                r = est.predict(X[:3])
                got.append((type(r), r.shape, r.tolist()))
            except Exception as exc:
                got.append((type(exc), str(exc)))
        assert got[0] == got[1], edit


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_later_partial_fits_of_plain_arrays_skip_nothing_scikit_learn_checks(kind):
    """A later partial_fit (or warm-started fit) of plain arrays that validate_data would return as
    they are leaves it out; anything else goes through it: scikit-learn's errors and warnings,
    word for word, for NaN and infinity in X or y, another width, no rows, y of another length,
    2-D and column y, object, float16, int and list X, DataFrames either way; and the same model
    as scikit-learn's after a sequence of plain calls."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4))
    y = np.arange(30) % 3 if kind == "classifier" else rng.standard_normal(30)
    ours_cls, sk_cls = (MLPClassifier, skn.MLPClassifier) if kind == "classifier" else (MLPRegressor, skn.MLPRegressor)
    first = dict(classes=[0, 1, 2]) if kind == "classifier" else {}
    Xnan, Xinf = X.copy(), X.copy()
    Xnan[3, 1], Xinf[5, 0] = np.nan, np.inf
    ynan = y.astype(float)
    ynan[2] = np.nan
    bad = [(Xnan, y), (Xinf, y), (X[:, :3], y), (X[:0], y[:0]), (X, y[:-1]), (X, y.reshape(-1, 1)),
           (X, y.astype(object)), (X.astype(np.float16), y), (X.astype(int), y), (X.tolist(), y),
           (pd.DataFrame(X, columns=list("abcd")), y), (X, ynan), (X, np.stack([y, y], axis=1))]
    for names in (False, True):
        Xfit = pd.DataFrame(X, columns=list("abcd")) if names else X
        for X2, y2 in bad + [(X, y)]:
            ests = [cls(hidden_layer_sizes=(3,), random_state=0).partial_fit(Xfit, y, **first)
                    for cls in (ours_cls, sk_cls)]
            got, want = (_error_of(lambda: e.partial_fit(X2, y2)) for e in ests)
            if kind == "regressor" and y2.ndim == 2 and y2.shape[1] == 2:  # another number of outputs:
                assert got[0] is want[0] is ValueError      # fastnn says so, scikit-learn's matmul fails
                continue
            assert got[0] == want[0] and got[1] == want[1] and got[3] == want[3], (names, type(X2), X2, y2)
    ests = [cls(hidden_layer_sizes=(3,), random_state=0).partial_fit(X[:10], y[:10], **first)
            for cls in (ours_cls, sk_cls)]
    for start in (10, 20):
        for e in ests:
            e.partial_fit(X[start:start + 10], y[start:start + 10])
    for a, b in zip(ests[0].coefs_ + ests[0].intercepts_, ests[1].coefs_ + ests[1].intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_state_edited_by_hand_leaves_the_checks_to_scikit_learn(monkeypatch):
    """helper-54: the shortcuts past validate_data and LabelBinarizer trust only what a fit leaves:
    n_features_in_ set to 0 or an array, y_type_ that disagrees with the number of classes, a
    signature given to __init__ after first use, a subclass whose __init__ leaves parameters out:
    each answers as scikit-learn's own estimator does."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 4)), np.arange(30) % 3

    def both(make, call):
        out = []
        for cls in (MLPClassifier, skn.MLPClassifier):
            est = make(cls)
            try:
                call(est)
                out.append((None, [round(float(v), 6) for v in est.loss_curve_]))
            except Exception as exc:
                out.append((type(exc), str(exc)))
        return out

    def fitted(cls, nfi):
        est = cls(hidden_layer_sizes=(3,), random_state=0).partial_fit(X, y, classes=[0, 1, 2])
        est.n_features_in_ = nfi
        return est
    Xnan = X.copy()
    Xnan[2, 2] = np.nan
    for nfi, X2, y2 in ((0, X[:, :0], y), (np.array([4, 4]), Xnan, y), (np.array([4, 4]), X, y[:-1])):
        got, want = both(lambda cls: fitted(cls, nfi), lambda e: e.partial_fit(X2, y2))
        assert want[0] is ValueError and got == want
    for classes, y_type in (([3, 9], "multiclass"), ([5], "multiclass"), ([0, 1, 2], "binary")):
        yc = np.array(classes)[np.arange(30) % len(classes)]

        def edited(cls):
            est = cls(hidden_layer_sizes=(3,), random_state=0).partial_fit(X, yc, classes=classes)
            est._label_binarizer.y_type_ = y_type
            return est
        got, want = both(edited, lambda e: e.partial_fit(X, yc))
        assert got == want, (classes, y_type)

    from sklearn.preprocessing import LabelBinarizer
    for edit in ("list", "unfitted", None, "unsorted"):
        def with_binarizer(cls):
            est = cls(hidden_layer_sizes=(3,), random_state=0).partial_fit(X, y, classes=[0, 1, 2])
            lb = est._label_binarizer
            if edit == "list":
                lb.classes_ = list(lb.classes_)
            elif edit == "unsorted":
                lb.classes_ = lb.classes_[::-1].copy()
            else:
                est._label_binarizer = LabelBinarizer() if edit == "unfitted" else None
            return est
        got, want = both(with_binarizer, lambda e: e.partial_fit(X, y))
        assert got == want, edit

    class Narrow(MLPClassifier):
        def __init__(self, extra=1, hidden_layer_sizes=(3,), random_state=0):
            super().__init__(hidden_layer_sizes=hidden_layer_sizes, random_state=random_state, max_iter=3)
            self.extra = extra
    assert Narrow().fit(X, y).n_iter_ == 3 and Narrow().partial_fit(X, y, classes=[0, 1, 2]).t_ == 30
    import inspect
    assert Narrow._get_param_names() == ["extra", "hidden_layer_sizes", "random_state"]
    monkeypatch.setattr(Narrow.__init__, "__signature__",
                        inspect.Signature([inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                                           inspect.Parameter("extra", inspect.Parameter.KEYWORD_ONLY, default=1)]),
                        raising=False)
    assert Narrow._get_param_names() == ["extra"]

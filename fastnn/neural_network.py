"""scikit-learn drop-ins: MLPClassifier and MLPRegressor trained by fastnn's engine.

Same parameters (names, defaults, order), validation, initial weights, batch order, updates,
losses, stopping rule, messages and fitted attributes as scikit-learn 1.9's
sklearn.neural_network estimators: on float64 data a fit equals scikit-learn's to rounding
(tests/test_neural_network.py). They follow 1.9 whichever scikit-learn (1.6 at least) is
installed, so an older one's fit lacks some of what they take (sample_weight and loss='poisson'
came in 1.7); the tests compare with the installed one on what it has.

The estimators are front ends. Each holds a fastnn Sequential (`model_`) and translates:
scikit-learn's parameters become layers, a loss with scikit-learn's conventions
(fastnn._engine.losses.SKLEARN), an optimizer in scikit-learn's form (SklearnSGD, SklearnAdam),
and a callback (_SklearnEpochs) that keeps scikit-learn's per-epoch books: loss curve, stopping
rule, learning-rate policy, validation scores and messages. Every epoch is one Sequential.fit
epoch, in the order scikit-learn's RandomState draws; `coefs_` and `intercepts_` are views of the
model's weights, and predictions run on the engine.

solver='lbfgs' is scikit-learn's _fit_lbfgs: scipy's L-BFGS-B over the model's flat parameter
buffer, the whole-data loss and gradient from the engine (Sequential.whole_gradient,
tests/test_sklearn_lbfgs.py). It refuses dropout, batch_norm and callbacks.

A fit reads its parameters once, as it starts (set_params from a callback applies to the next
fit); an estimator runs one fit or partial_fit at a time (another, from its callbacks or another
thread, raises RuntimeError); warm_start and partial_fit refuse parameters that describe another
network than the fitted one.

Beyond scikit-learn (keyword parameters; their defaults are scikit-learn's behaviour): dropout,
batch_norm, one activation per hidden layer and 'leaky_relu', the solvers 'adamw' and 'rmsprop',
class_weight, dtype, callbacks, and a live progress bar on a terminal with verbose.

Sparse X (scipy.sparse, as scikit-learn accepts it): fit densifies it once, in the model's dtype
(n_samples x n_features memory); predictions densify it chunk by chunk (_SPARSE_CHUNK_BYTES).

from_sklearn / to_sklearn convert fitted models both ways (see _BaseMLP.from_sklearn).

Needs scikit-learn (pip install fastnn[sklearn]).
"""
import copy
import functools
import math
import os
import re
import sys
import threading
import warnings
import weakref
from numbers import Integral, Real
from types import SimpleNamespace

import numpy as np
import scipy.optimize
import scipy.sparse as sp
import sklearn

if tuple(int(p) for p in re.findall(r"\d+", sklearn.__version__)[:2]) < (1, 6):  # validate_data
    raise ImportError(f"fastnn's MLPClassifier and MLPRegressor need scikit-learn >= 1.6, found "
                      f"{sklearn.__version__}: pip install -U 'scikit-learn>=1.6'")
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as _SkMLPClassifier
from sklearn.neural_network import MLPRegressor as _SkMLPRegressor
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer as _SkAdam
from sklearn.neural_network._stochastic_optimizers import SGDOptimizer as _SkSGD
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
try:  # L-BFGS-B's "iprint" only for scipy < 1.15, which deprecates it
    from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
except ImportError:  # an older scikit-learn (Python 3.9 has 1.6 at most): the same rule, from its parts
    from sklearn.utils.fixes import parse_version, sp_version

    def _get_additional_lbfgs_options_dict(key, value):
        return {} if sp_version >= parse_version("1.15") else {key: value}
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_array, check_is_fitted, validate_data

from ._engine import thread_limit
from ._engine.codes import CTR_STEP
from ._engine.errors import NonFiniteError
from ._engine.validation import FLOAT_DTYPES, _all_finite, cast_finite
from .nn import Activation, BatchNorm, Dense, Dropout, Sequential
from .nn.callbacks import Callback, check_free
from .nn.optimizers import AdamW, RMSprop, SklearnAdam, SklearnSGD
from .nn.progress import ProgressBar

__all__ = ["MLPClassifier", "MLPRegressor"]

_ACTIVATIONS = ("identity", "logistic", "tanh", "relu", "leaky_relu")
_SK_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
_SPARSE = ["csr", "csc"]  # scikit-learn's accept_sparse for its MLPs (other formats become csr)
_SPARSE_CHUNK_BYTES = 1 << 24  # a sparse X is predicted in dense chunks of at most this size
_MIN_CHUNK_ROWS = 16  # ... or of this many rows, for very wide X
# the stochastic solvers' bookkeeping, which scikit-learn's _initialize makes for them only
_STOCHASTIC_BOOKS = ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_",
                     "validation_loss_curve_", "_no_improvement_count")


def _constraints(sk_constraints):
    """scikit-learn's table, widened for what fastnn adds."""
    c = dict(sk_constraints)
    c["activation"] = [StrOptions(set(_ACTIVATIONS)), list, tuple]
    c["solver"] = [StrOptions({"lbfgs", "sgd", "adam", "adamw", "rmsprop"})]
    c.update({
        "dropout": [Interval(Real, 0, 1, closed="left"), list, tuple],
        "batch_norm": ["boolean"],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "dtype": [StrOptions({"float32", "float64"}), None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "callbacks": [list, None],
    })
    return c


_FITTING, _FITTING_LOCK = {}, threading.Lock()  # id(estimator) -> the thread fitting it


def _forget_fits_of_vanished_threads():
    """In a child after os.fork only the forking thread exists: the fits other threads of the
    parent were running will never end there (and one of them may have held the lock)."""
    global _FITTING_LOCK
    _FITTING_LOCK = threading.Lock()
    me = threading.get_ident()
    for key, thread in list(_FITTING.items()):
        if thread != me:
            del _FITTING[key]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_fits_of_vanished_threads)


def _one_fit_at_a_time(fit):
    """An estimator runs one fit or partial_fit at a time: another one, from its callbacks or from
    another thread, would swap model_ and interleave the per-epoch books of both."""

    @functools.wraps(fit)
    def guarded(est, *args, **kwargs):
        with _FITTING_LOCK:
            if id(est) in _FITTING:
                raise RuntimeError(f"cannot fit this {type(est).__name__}: its fit is already running "
                                   f"(called from one of its callbacks, or from another thread)")
            _FITTING[id(est)] = threading.get_ident()
        try:
            return fit(est, *args, **kwargs)
        finally:
            with _FITTING_LOCK:
                _FITTING.pop(id(est), None)
    return guarded


class _Order:
    """scikit-learn's epoch order: each epoch re-shuffles the previous epoch's order with the
    fit's RandomState (sklearn.utils.shuffle), as _fit_stochastic does. random_state: that
    RandomState, or the int seed it is made from, made only if a second epoch needs it (the first
    epoch's order from a fresh RandomState(seed) is always the same: _first_shuffle)."""

    def __init__(self, n, random_state):
        self.idx, self.rs, self.calls = np.arange(n, dtype=int), random_state, 0

    def __call__(self, epoch):
        if isinstance(self.rs, Integral):
            if self.calls == 0:
                self.calls = 1
                self.idx = _first_shuffle(self.rs, len(self.idx))
                return self.idx
            self.rs = check_random_state(self.rs)
            _shuffled(self.idx, self.rs)  # the first epoch's draw, again
        self.calls += 1
        self.idx = _shuffled(self.idx, self.rs)
        return self.idx


def _shuffled(idx, rs):
    """sklearn.utils.shuffle(idx, random_state=rs) of a 1-D array by a RandomState: the steps of
    its resample (arange, rs.shuffle, take), the same draw, without its checks of the input
    (scikit-learn 1.6 to 1.9; 40 % of a fit's Python time per epoch on a dataset of 150 rows)."""
    order = np.arange(len(idx))
    rs.shuffle(order)
    return idx[order]


_FIRST_SHUFFLES = {}  # (seed, n) -> the order _first_shuffle gives, read-only; a few small ones
_FIRST_SHUFFLES_LOCK = threading.Lock()


def _first_shuffle(seed, n):
    """sklearn.utils.shuffle(range(n)) by a fresh RandomState(seed): every partial_fit of n rows
    with an int random_state draws this order (scikit-learn seeds a RandomState for each call:
    64 us, 12 % of a partial_fit of one row on the 2-core Zen 5 VM); the last few are kept."""
    key = (int(seed), n)
    got = _FIRST_SHUFFLES.get(key)
    if got is None:
        got = _shuffled(np.arange(n, dtype=int), check_random_state(seed))
        got.flags.writeable = False
        if n <= 1 << 16:
            with _FIRST_SHUFFLES_LOCK:
                while len(_FIRST_SHUFFLES) >= 16:
                    del _FIRST_SHUFFLES[next(iter(_FIRST_SHUFFLES))]
                _FIRST_SHUFFLES[key] = got
    return got.copy()


class _LiveBar(ProgressBar):
    """The live bar on a terminal while an epoch runs; its line is cleared at the epoch's end,
    where scikit-learn's own 'Iteration ...' line is printed instead."""

    _abstract = True

    def on_epoch_end(self, epoch, logs=None):
        with self._lock:
            self._live = False
            self._write("")
            self._out().write("\r")
            self._out().flush()


_PARAM_NAMES = weakref.WeakKeyDictionary()  # class -> (its __init__, its parameter names)


def _param_names(cls):
    """An estimator class's parameter names (BaseEstimator._get_param_names, which reads the
    signature of __init__ at every call), read again only when the class's __init__ changes;
    a class is not kept alive by it."""
    init = cls.__init__
    key = (init, getattr(init, "__signature__", None))  # inspect.signature honours __signature__
    kept = _PARAM_NAMES.get(cls)
    if kept is None or kept[0] != key:
        kept = _PARAM_NAMES[cls] = (key, tuple(BaseEstimator._get_param_names.__func__(cls)))
    return kept[1]


# the parameters _SklearnEpochs reads (scikit-learn's _fit_stochastic loop and its optimizers)
_EPOCH_PARAMS = ("verbose", "tol", "n_iter_no_change", "max_iter", "alpha", "learning_rate", "power_t")


class _SklearnEpochs(Callback):
    """scikit-learn's bookkeeping after each epoch (the loop body of _fit_stochastic): loss
    curve, validation score, _update_no_improvement_count, the SGD learning-rate policy
    (iteration_ends, trigger_stopping), its messages and its ConvergenceWarning."""

    _abstract = True

    def __init__(self, est, n, incremental, val):
        self.est, self.n, self.incremental, self.val = est, n, incremental, val
        self.stopped = False
        # the parameters as the fit started: set_params from a callback applies to the next fit.
        # Read as attributes, as scikit-learn's loop reads them: a subclass whose __init__ leaves
        # some out of its parameters (get_params then lacks them) trains as it does there
        self.p = SimpleNamespace(**{k: getattr(est, k) for k in _EPOCH_PARAMS})
        # the scale scikit-learn's rate gives (its SGD's invscaling and adaptive change it) over
        # the model's optimizer's rate, which is scikit-learn's optimizer's learning_rate_init,
        # kept across partial_fit calls whatever set_params says; what other callbacks
        # (ReduceLROnPlateau) do to model.lr_scale multiplies it
        self.base = float(est.model_.optimizer.lr)
        self.scale = est._learning_rate / self.base

    def on_epoch_end(self, epoch, logs=None):
        est, model, p = self.est, self.model, self.p
        est.n_iter_ += 1
        est.loss_ = float(logs["loss"])
        est.t_ += self.n
        est.loss_curve_.append(est.loss_)
        if p.verbose:
            print("Iteration %d, loss = %.8f" % (est.n_iter_, est.loss_))
        if self.val is not None:
            self._validation(logs)
        else:
            if est.loss_curve_[-1] > est.best_loss_ - p.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if est.loss_curve_[-1] < est.best_loss_:
                est.best_loss_ = est.loss_curve_[-1]
        # the optimizer's policy, as it was made (partial_fit keeps it whatever set_params says)
        sgd = isinstance(model.optimizer, SklearnSGD)
        schedule, power_t = est._sgd_schedule(p)
        if sgd and schedule == "invscaling":  # SGDOptimizer.iteration_ends
            est._learning_rate = self.base / (est.t_ + 1) ** power_t
        if est._no_improvement_count > p.n_iter_no_change:
            what = "Validation score" if self.val is not None else "Training loss"
            msg = ("%s did not improve more than tol=%f for %d consecutive epochs."
                   % (what, p.tol, p.n_iter_no_change))
            if sgd and schedule == "adaptive":  # SGDOptimizer.trigger_stopping
                if est._learning_rate <= 1e-6:
                    if p.verbose:
                        print(msg + " Learning rate too small. Stopping.")
                    self.stop()
                else:
                    est._learning_rate /= 5.0
                    if p.verbose:
                        print(msg + " Setting learning rate to %f" % est._learning_rate)
                    est._no_improvement_count = 0
            else:
                if p.verbose:
                    print(msg + " Stopping.")
                self.stop()
        scale = est._learning_rate / self.base
        if model.lr_scale == self.scale or self.scale <= 0:  # no other callback changed it
            new = scale
        elif scale != self.scale:  # scikit-learn's rate only falls: no overflow
            new = model.lr_scale * (scale / self.scale)
        else:
            new = model.lr_scale
        # invscaling's rate can underflow to 0 (scikit-learn then trains on at rate 0): the
        # smallest positive scale, whose rate is 0 in the engine's arithmetic
        model.lr_scale = new if new > 0 else math.ulp(0.0)
        self.scale = scale
        if not self.stopped and not self.incremental and est.n_iter_ == p.max_iter:
            warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                          "optimization hasn't converged yet." % p.max_iter, ConvergenceWarning)

    def stop(self):
        self.stopped = self.model.stop_training = True

    def _validation(self, logs):
        """scikit-learn's validation score and stopping count; the score and the objective on the
        validation rows also go into the epoch's logs ('val_accuracy' or 'val_r2', 'val_loss'),
        which the callbacks after this one and history_ see."""
        est, (X_val, y_val, sw_val, targets_val) = self.est, self.val
        y_pred = est._predict_checked(X_val)
        if np.issubdtype(np.asarray(y_pred).dtype, np.floating) and not np.isfinite(y_pred).all():
            score = np.nan
        else:
            score = est._score_function(y_val, y_pred, sample_weight=sw_val)
        est.validation_scores_.append(score)
        est.validation_loss_curve_.append(est._objective(X_val, targets_val, sw_val, self.p.alpha))
        logs["val_loss"] = est.validation_loss_curve_[-1]
        if not is_classifier(est):
            logs["val_r2"] = float(score)
        elif est._label_binarizer.y_type_.startswith("multilabel"):
            # per label, as the engine's training accuracy beside it (scikit-learn's score, in
            # validation_scores_, counts a row right only when all its labels are)
            per_row = np.mean(np.asarray(y_pred) == np.asarray(y_val), axis=1)
            logs["val_accuracy"] = float(np.average(per_row, weights=sw_val))
        else:
            logs["val_accuracy"] = float(score)
        if self.p.verbose:
            print("Validation score: %f" % est.validation_scores_[-1])
        if score < est.best_validation_score_ + self.p.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if score > est.best_validation_score_:
            est.best_validation_score_ = score
            est._best_weights = self.model.get_weights()


def _per_layer(value, n_hidden, name):
    """A scalar or a list of one value per hidden layer -> a list of n_hidden values."""
    if isinstance(value, (list, tuple)):
        if len(value) != n_hidden:
            raise ValueError(f"{name} must be one value or a list of one per hidden layer "
                             f"({n_hidden}), got {len(value)}: {list(value)!r}")
        return list(value)
    return [value] * n_hidden


class _BaseMLP(BaseEstimator):
    """Shared fit: scikit-learn's _fit / _fit_stochastic, each epoch run by a fastnn Sequential."""

    @classmethod
    def _get_param_names(cls):
        """BaseEstimator's, read once per class (get_params, and scikit-learn's parameter check
        before every fit and partial_fit, called it: 50 us of a partial_fit of one row)."""
        return list(_param_names(cls))

    # -- fitted weights: views of the model's buffer ------------------------------------------
    def __sklearn_is_fitted__(self):
        return "model_" in self.__dict__

    def _fitted_model(self):
        try:
            return self.__dict__["model_"]
        except KeyError:
            raise AttributeError(f"This {type(self).__name__} instance is not fitted yet") from None

    @property
    def coefs_(self):
        """Weight matrices (n_in, n_out), one per Dense layer: views of the model's weights."""
        return self._fitted_model().coefs_

    @coefs_.setter
    def coefs_(self, value):
        self._set_dense_arrays("kernel", value)

    @property
    def intercepts_(self):
        """Bias vectors, one per Dense layer: views of the model's weights."""
        return self._fitted_model().intercepts_

    @intercepts_.setter
    def intercepts_(self, value):
        self._set_dense_arrays("bias", value)

    def _set_dense_arrays(self, name, arrays):
        """Assigning coefs_ or intercepts_ sets those arrays of the model (shapes checked)."""
        model = self._fitted_model()
        arrays = list(arrays)
        names = [n for ly in model.layers for n in ly.array_names()]
        if len(arrays) != names.count(name):
            raise ValueError(f"expected {names.count(name)} arrays, got {len(arrays)}")
        it = iter(arrays)
        model.set_weights([next(it) if n == name else w for n, w in zip(names, model.get_weights())])

    # -- the network ------------------------------------------------------------------------------
    def _hidden(self):
        hidden = self.hidden_layer_sizes
        if not hasattr(hidden, "__iter__"):
            hidden = [hidden]
        hidden = list(hidden)
        if np.any(np.array(hidden) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden)
        return hidden

    def _activations(self, n_hidden):
        acts = _per_layer(self.activation, n_hidden, "activation")
        for a in acts:
            if a not in _ACTIVATIONS:
                raise ValueError(f"The 'activation' parameter of {type(self).__name__} must be one of "
                                 f"{_ACTIVATIONS} or a list of them, one per hidden layer. Got {a!r} instead.")
        return acts

    def _dropout_rates(self, n_hidden):
        rates = _per_layer(self.dropout, n_hidden, "dropout")
        for r in rates:
            if not isinstance(r, Real) or isinstance(r, bool) or not 0 <= r < 1:
                raise ValueError(f"The 'dropout' parameter of {type(self).__name__} must be a rate in "
                                 f"[0, 1) or a list of them, one per hidden layer. Got {r!r} instead.")
        return rates

    def _callbacks(self):
        callbacks = list(self.callbacks or [])
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be fastnn Callback instances, not {cb!r}")
        return callbacks

    def _layers(self, units, acts, rates):
        layers = []
        for width, act, rate in zip(units[1:-1], acts, rates):
            if self.batch_norm:
                layers += [Dense(width), BatchNorm(), Activation(act)]
            else:
                layers.append(Dense(width, activation=act))
            if rate > 0:
                layers.append(Dropout(rate))
        return layers + [Dense(units[-1])]

    def _optimizer(self):
        common = dict(lr=float(self.learning_rate_init), alpha=float(self.alpha))
        adam = dict(beta1=float(self.beta_1), beta2=float(self.beta_2), eps=float(self.epsilon))
        if self.solver == "sgd":
            return SklearnSGD(momentum=float(self.momentum), nesterov=bool(self.nesterovs_momentum), **common)
        if self.solver == "adam":
            return SklearnAdam(**adam, **common)
        if self.solver == "adamw":
            return AdamW(**adam, **common)
        return RMSprop(eps=float(self.epsilon), **common)

    def _initialize(self, units, acts, dtype, rs):
        """scikit-learn's _initialize: Glorot-uniform weights drawn layer by layer from the fit's
        RandomState (factor 2 for logistic), then the bookkeeping attributes."""
        self.n_iter_, self.t_ = 0, 0
        self.n_layers_ = len(units)
        self.out_activation_ = self._out_activation()
        drawn = []
        for i, (a, b) in enumerate(zip(units[:-1], units[1:])):  # _init_coef, layer by layer
            act = acts[min(i, len(acts) - 1)] if acts else self.activation
            factor = 2.0 if act == "logistic" else 6.0
            bound = np.sqrt(factor / (a + b))
            drawn.append((rs.uniform(-bound, bound, (a, b)), rs.uniform(-bound, bound, b)))
        seed = 0 if not any(self._dropout_rates(len(units) - 2)) else int(rs.randint(2 ** 31))
        model = Sequential(self._layers(units, acts, self._dropout_rates(len(units) - 2)),
                           dtype=dtype, seed=seed)
        model.compile(self._optimizer(), loss=self._loss_name())
        model.build(units[0])
        kernels = iter(drawn)
        weights = []
        for ly in model.layers:
            names = ly.array_names()
            if "kernel" in names:
                W, b = next(kernels)
                weights += [W, b]
            else:
                weights += [getattr(ly, n) for n in names]
        model.set_weights(weights)
        self.model_ = model
        self._optimizer_ready = False
        self._best_weights = model.get_weights()
        self.loss_curve_, self._no_improvement_count = [], 0
        if self.early_stopping:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
            self.validation_loss_curve_ = []
        else:
            self.best_loss_, self.validation_scores_, self.best_validation_score_ = np.inf, None, None
            self.validation_loss_curve_ = None

    def _objective(self, X, targets, sw, alpha):
        """scikit-learn's objective on (X, targets): the loss plus 0.5 alpha |W|^2 / sum(sw)."""
        model = self.model_
        T, labels = targets
        loss = model.evaluate(X, labels if labels is not None else T, sw)["loss"]
        s = X.shape[0] if sw is None else float(np.sum(sw))
        return float(loss + 0.5 * alpha * sum(float(np.dot(W.ravel(), W.ravel())) for W in model.coefs_) / s)

    def _plain_xy(self, X, y, reset, y_kinds):
        """(X, y) as validate_data would return them, where it would return them as they are and
        warn of nothing: a later partial_fit or warm-started fit (reset False) of X a plain float
        ndarray of the fitted width with at least one row, found finite by the compiled check, a
        model without feature names, and y a plain ndarray of as many rows, 1-D or 2-D, of a kind
        in y_kinds, finite where float. None for anything else: validate_data decides, with its
        errors (it took 90 of the 300 us of a partial_fit of one MNIST row, 2-core Zen 5 VM)."""
        if (reset or not (_fitted_plain(self, X) and _passes_as_is(self, X))
                or type(y) is not np.ndarray or y.ndim not in (1, 2) or len(y) != X.shape[0] or 0 in y.shape
                or y.dtype.kind not in y_kinds or (y.dtype.kind == "f" and not np.isfinite(y).all())):
            return None
        return (X, y) if _known_finite(X) else None

    def _check_network(self, units, acts, rates):
        """warm_start and partial_fit continue training the fitted network: the data and the
        parameters must still describe it."""
        model = self.model_
        if model.n_inputs != units[0] or model.n_outputs != units[-1]:
            raise ValueError(f"X has {units[0]} features and y {units[-1]} outputs, but this "
                             f"model was fitted with {model.n_inputs} and {model.n_outputs}")
        wanted = [(type(ly).__name__, ly.get_config()) for ly in self._layers(units, acts, rates)]
        fitted = [(type(ly).__name__, ly.get_config()) for ly in model.layers]
        if wanted != fitted or (self.dtype is not None and np.dtype(self.dtype) != model.dtype):
            raise ValueError(f"this {type(self).__name__}'s hidden_layer_sizes, activation, dropout, "
                             f"batch_norm or dtype changed since its network was built; warm_start and "
                             f"partial_fit continue training that network: fit with warm_start=False "
                             f"to build a new one")

    def _check_class_weight(self, incremental):
        pass

    def _check_supported(self):
        if self.solver == "lbfgs":
            self._check_lbfgs()

    def _check_solver(self):
        if self.solver not in ("sgd", "adam", "adamw", "rmsprop"):
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 "%s is not stochastic." % self.solver)
        return True

    # -- fit -----------------------------------------------------------------------------------
    @_one_fit_at_a_time
    def _fit(self, X, y, sample_weight=None, incremental=False):
        with self._thread_limit():
            return self._fit_limited(X, y, sample_weight, incremental)

    def _fit_limited(self, X, y, sample_weight, incremental):
        self._check_supported()
        hidden = self._hidden()
        acts = self._activations(len(hidden))
        rates = self._dropout_rates(len(hidden))
        callbacks = self._callbacks()
        check_free(callbacks)  # before the model is remade: a fit refused for a busy callback changes nothing
        first_pass = "model_" not in self.__dict__ or (not self.warm_start and not incremental)

        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        self._check_class_weight(incremental)
        n, n_features = X.shape
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        units = [n_features] + hidden + [y.shape[1]]
        if not first_pass:
            self._check_network(units, acts, rates)
        self.n_outputs_ = y.shape[1]
        # a later partial_fit draws nothing but its rows' order, which an int seed gives (_Order)
        # (a seed RandomState would refuse, let through by skip_parameter_validation, is refused)
        later = incremental and not first_pass and not self.early_stopping
        seeded = isinstance(self.random_state, Integral) and 0 <= self.random_state <= 2**32 - 1
        rs = self.random_state if later and seeded else check_random_state(self.random_state)

        kept = None
        if first_pass:
            dtype = self.dtype if self.dtype is not None else X.dtype
            stale = {k: self.__dict__[k] for k in _STOCHASTIC_BOOKS if k in self.__dict__}
            kept = self._stochastic_optimizer() if self.solver == "lbfgs" else None
            self._initialize(units, acts, np.dtype(dtype), rs)
            if self.solver == "lbfgs":  # scikit-learn's _initialize leaves these as they were for lbfgs
                for k in _STOCHASTIC_BOOKS:
                    self.__dict__.pop(k, None)
                self.__dict__.update(stale)
        model = self.model_
        X = _dense(X, model.dtype)
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, y, sample_weight, first_pass)
            if kept is not None:
                self._reinstate_optimizer(kept)
            return self
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if not incremental or not getattr(self, "_optimizer_ready", False):
            model.compile(self._optimizer(), loss=self._loss_name())  # a new optimizer, as sklearn's
            self._learning_rate = float(self.learning_rate_init)
            self._sgd_policy = (self.learning_rate, float(self.power_t))
            self._optimizer_ready = True
        elif model.optimizer.alpha != float(self.alpha):
            # scikit-learn's partial_fit keeps its optimizer (solver, rates, momentum, betas: what
            # set_params says since is ignored) but reads alpha afresh for every batch: the same
            # optimizer with the new alpha, its state kept
            opt = model.optimizer
            model._swap_optimizer(type(opt).from_config({**opt.get_config(), "alpha": float(self.alpha)}))

        val = None
        if self.early_stopping:  # scikit-learn's split, from the same RandomState
            stratify = y if (is_classifier(self) and self.n_outputs_ == 1) else None
            if sample_weight is None:
                X, X_val, y, y_val = train_test_split(X, y, random_state=rs, test_size=self.validation_fraction,
                                                      stratify=stratify)
                sw_val = None
            else:
                X, X_val, y, y_val, sample_weight, sw_val = train_test_split(
                    X, y, sample_weight, random_state=rs, test_size=self.validation_fraction, stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
            X_val = cast_finite(X_val, model.dtype, "X")
            targets_val = self._engine_targets(y_val, model.dtype)
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
            val = (X_val, y_val, sw_val, targets_val)
        n = X.shape[0]
        sample_weight = self._weighted(y, sample_weight, incremental)

        if self.batch_size == "auto":
            batch = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch = int(np.clip(self.batch_size, 1, n))

        T, labels = self._engine_targets(y, model.dtype)
        X = cast_finite(X, model.dtype, "X")
        rule = _SklearnEpochs(self, n, incremental, val)
        live = [_LiveBar()] if self.verbose and _is_terminal() else []
        self.n_iter_ = 0
        try:
            model._fit(X, labels if labels is not None else T, epochs=1 if incremental else self.max_iter,
                       batch_size=batch, shuffle=_Order(n, rs) if self.shuffle else False, verbose=0,
                       sample_weight=sample_weight, callbacks=live + [rule] + callbacks,
                       # X was found finite (validate_data, or _known_finite), unless assume_finite
                       x_finite=not sklearn.get_config()["assume_finite"])
        except NonFiniteError:
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.") from None
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        self.history_ = model.history
        if val is not None:  # the best validation epoch's weights
            model.set_weights(self._best_weights)
        return self

    def _weighted(self, Y, sample_weight, incremental):
        return sample_weight

    def _sgd_schedule(self, params):
        """(learning_rate, power_t) of the SGD optimizer as it was made (_sgd_policy), or as
        `params` (the estimator, or its parameters at a fit's start) says, for an estimator pickled
        before that record was kept."""
        return getattr(self, "_sgd_policy", None) or (params.learning_rate, params.power_t)

    def _stochastic_optimizer(self):
        """The stochastic optimizer of the fitted model and its state, or None: scikit-learn keeps
        its _optimizer through an lbfgs refit (which makes new weights), and a later partial_fit
        goes on with it."""
        model = self.__dict__.get("model_")
        if model is None or not getattr(self, "_optimizer_ready", False) or model._built is None:
            return None
        built = model._built
        return {"optimizer": model.optimizer, "slots": built.slots.copy(), "step": int(built.counters[CTR_STEP]),
                "lr_scale": model.lr_scale, "learning_rate": self._learning_rate,
                "policy": getattr(self, "_sgd_policy", None), "layout": _layout(model)}

    def _reinstate_optimizer(self, kept):
        """_stochastic_optimizer's record on the refitted model, when its parameters are laid out
        alike (scikit-learn would fail on another layout; fastnn starts afresh there)."""
        model = self.model_
        if _layout(model) != kept["layout"]:
            return
        model.compile(kept["optimizer"], loss=self._loss_name())
        built = model._built
        built.slots[...] = kept["slots"]
        built.counters[CTR_STEP] = kept["step"]
        model.lr_scale = kept["lr_scale"]
        self._learning_rate, self._optimizer_ready = kept["learning_rate"], True
        if kept["policy"] is not None:
            self._sgd_policy = kept["policy"]

    # -- solver='lbfgs': scipy's L-BFGS-B over the model's flat parameter buffer ------------------
    def _check_lbfgs(self):
        """lbfgs minimises one deterministic objective over the whole data: refuse what would make
        it random (dropout), dependent on the engine's chunks and blind to the running statistics
        (batch_norm), or that needs epochs (callbacks)."""
        rates = self._dropout_rates(len(self._hidden()))
        if any(r > 0 for r in rates):
            raise ValueError(f"solver='lbfgs' cannot train with dropout={self.dropout!r}: dropout makes "
                             f"the objective random and L-BFGS needs a deterministic one; use dropout=0 "
                             f"or a stochastic solver ('sgd', 'adam', 'adamw', 'rmsprop')")
        if self.batch_norm:
            raise ValueError("solver='lbfgs' cannot train with batch_norm=True: batch normalisation "
                             "needs mini-batch statistics and running averages, and L-BFGS takes "
                             "full-batch steps; use batch_norm=False or a stochastic solver")
        if self.callbacks:
            raise ValueError("solver='lbfgs' has no epochs to call callbacks at; use callbacks=None "
                             "or a stochastic solver")

    def _fit_lbfgs(self, X, y, sample_weight, first_pass):
        """scikit-learn's _fit_lbfgs: scipy.optimize.minimize(L-BFGS-B, jac=True) of the loss over
        all of X plus 0.5 alpha |W|^2 / S (S: the rows, or the sample-weight sum), gradient + alpha
        W / S on the kernels, params[0:n_decay]. The loss and gradient come from the engine
        (Sequential.whole_gradient); scipy's iterate is copied into the flat parameter buffer, the
        only copy. The starting point is the buffer itself, so scipy evaluates the objective in the
        model's dtype, as it does scikit-learn's in X's: a float32 model sees each iterate rounded
        to float32 and the engine runs in float32, as scikit-learn's float32 fit does (its coefs_
        come back float64 from scipy's iterate; the model keeps the float32 rounding of it).
        Attributes as scikit-learn sets them for lbfgs: n_iter_, loss_ (no loss_curve_, best_loss_
        or validation scores of its own: those of an earlier stochastic fit stay, as in
        scikit-learn), its ConvergenceWarning and its (lack of) verbose output."""
        model = self.model_
        if first_pass:
            self.__dict__.pop("history_", None)
        if model.loss != self._loss_name():
            model.compile(model.optimizer, loss=self._loss_name())
        sample_weight = self._weighted(y, sample_weight, False)
        T, labels = self._engine_targets(y, model.dtype)
        sw = None if sample_weight is None else np.ascontiguousarray(sample_weight, dtype=model.dtype)
        loss_and_gradient = model.whole_gradient(cast_finite(X, model.dtype, "X"),
                                                 labels if labels is not None else T, sw)
        S = X.shape[0] if sample_weight is None else sample_weight.sum()
        params, n_decay, alpha = model.params, model.n_decay, float(self.alpha)

        def fun(x):
            np.copyto(params, x, casting="unsafe")
            grads = np.empty_like(params)
            loss = loss_and_gradient(grads)
            W = x[:n_decay]
            loss += 0.5 * alpha * float(np.dot(W, W)) / S
            grads = grads.astype(np.float64, copy=False)
            grads[:n_decay] += (alpha / S) * W
            return loss, grads

        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        # held as a training call holds it: another thread's set_weights or coefs_[i] = W would be
        # overwritten by scipy's next iterate, or land between an iterate and its gradient
        with model._exclusive("fit", training=True):
            opt_res = scipy.optimize.minimize(
                fun, params.copy(), method="L-BFGS-B", jac=True,
                options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                         **_get_additional_lbfgs_options_dict("iprint", iprint)})
            np.copyto(params, opt_res.x, casting="unsafe")
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_ = opt_res.fun
        if not np.isfinite(params).all():
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    def save(self, path):
        """Write the fitted estimator to a safetensors file at `path`, atomically (fastnn's model
        file: fastnn/files/estimator_file.py): its parameters, fitted attributes and model, with
        the optimizer state. fastnn.load(path) gives back an estimator that predicts
        bit-identically and continues (warm_start, partial_fit) as this one would."""
        from .files import model_file
        model_file.save(self, path)

    def _thread_limit(self):
        """thread_limit(n_threads), naming the parameter when it is bad (set after a fit, say:
        predict does not validate parameters as fit does)."""
        try:
            return thread_limit(self.n_threads)
        except ValueError:
            raise ValueError(f"The 'n_threads' parameter of {type(self).__name__} must be an int in the "
                             f"range [1, inf) or None. Got {self.n_threads!r} instead.") from None

    def _forward_pass_fast(self, X, check_input=True):
        """The output layer's activation (probabilities, means), as scikit-learn's."""
        # validate_data's check for NaN and infinity, a NumPy sum over X (1.5 ms of a 6.4 ms
        # predict_proba of 10,000 MNIST rows, 2-core Zen 5 VM), is left to the engine's compiled
        # one where X is a plain float ndarray of the fitted width: validate_data can then refuse
        # it for nothing else after that check, so scikit-learn's error, raised here where the
        # engine refuses X, comes in its order. Any other X goes through scikit-learn's own call
        # (its dtype kept: float16 named as float16), then to the engine's dtypes. validate_data
        # itself is left out for such an X of at least one row where the model has no feature
        # names: it would return X as it is, warning of nothing (40 of the 90 us of a predict of one
        # row, 2-core Zen 5 VM).
        lean = check_input and _fitted_plain(self, X)
        if lean:
            if not _passes_as_is(self, X):
                X = validate_data(self, X, accept_sparse=_SPARSE, dtype=(np.float64, np.float32), reset=False,
                                  ensure_all_finite=False)
        elif check_input:
            X = check_array(validate_data(self, X, accept_sparse=_SPARSE, reset=False), accept_sparse=_SPARSE,
                            dtype=(np.float64, np.float32), ensure_all_finite=False)
        model = self.model_
        run = model.predict_proba if is_classifier(self) else model.predict
        refused = None
        with self._thread_limit():
            try:
                out = _chunked(run, X) if sp.issparse(X) else run(X)
            except ValueError as exc:
                if not lean:
                    raise
                refused = exc
        if refused is not None:  # outside the handler: scikit-learn's error chains no other
            check_array(X, accept_sparse=_SPARSE, dtype=None, input_name="X", estimator=self)
            raise refused
        # scikit-learn's dtype: X's with its coefs_' (float64 X through a float32 model: float64)
        dtype = getattr(X, "dtype", None)
        return out if dtype is None else out.astype(np.result_type(dtype, out.dtype), copy=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # -- scikit-learn interop: from_sklearn / to_sklearn ---------------------------------------
    # The fitted attributes both estimators share, copied as they are (lists and arrays copied).
    _SK_FITTED = ("n_iter_", "t_", "n_layers_", "n_outputs_", "out_activation_", "n_features_in_",
                  "feature_names_in_", "loss_", "loss_curve_", "best_loss_", "validation_scores_",
                  "best_validation_score_", "_no_improvement_count")

    @classmethod
    def from_sklearn(cls, estimator):
        """A fastnn estimator with the parameters, weights and fitted attributes of a fitted
        scikit-learn estimator of the same kind: it predicts the same (to rounding in the weights'
        dtype), scores, and goes on training with warm_start or partial_fit.

        scikit-learn keeps its optimizer (_optimizer: SGD's velocities and current rate, Adam's
        moments and step count) in the fitted estimator, and pickles it, so that partial_fit goes
        on where it stopped; that state is converted too, so partial_fit continues as scikit-learn's
        own would, with that optimizer's kind and settings (scikit-learn's partial_fit keeps them
        whatever set_params said since). Without one (lbfgs) the first partial_fit starts a fresh
        optimizer. Raises TypeError for another class, NotFittedError for
        an unfitted estimator."""
        sk_cls = cls._sklearn_class
        if not isinstance(estimator, sk_cls):
            raise TypeError(f"{cls.__name__}.from_sklearn takes a fitted sklearn.neural_network."
                            f"{sk_cls.__name__}, got {type(estimator).__module__}.{type(estimator).__name__}")
        check_is_fitted(estimator, "coefs_")
        names = cls._get_param_names()
        est = cls(**{k: copy.deepcopy(v) for k, v in estimator.get_params(deep=False).items() if k in names})
        coefs, intercepts = list(estimator.coefs_), list(estimator.intercepts_)
        units = _units_of(coefs, intercepts)
        hidden = est._hidden()
        if units[1:-1] != hidden:
            raise ValueError(f"the estimator's weights have hidden layers {units[1:-1]}, but its "
                             f"hidden_layer_sizes is {hidden}")
        acts = est._activations(len(hidden))
        for name in cls._SK_FITTED + cls._SK_FITTED_OWN:
            if hasattr(estimator, name):
                setattr(est, name, copy.deepcopy(getattr(estimator, name)))
        if "_label_binarizer" in est.__dict__:  # classes_ is the binarizer's, as in scikit-learn
            est.classes_ = est._label_binarizer.classes_
        if est.out_activation_ != est._out_activation():
            raise ValueError(f"the estimator's out_activation_ {est.out_activation_!r} does not "
                             f"match its parameters ({est._out_activation()!r})")
        dtype = np.float32 if all(np.asarray(a).dtype == np.float32 for a in coefs + intercepts) \
            else np.float64
        model = Sequential(est._layers(units, acts, [0.0] * len(hidden)), dtype=dtype, seed=0)
        model.compile(est._optimizer(), loss=est._loss_name())
        model.build(units[0])
        model.set_weights([a for pair in zip(coefs, intercepts) for a in pair])
        est.model_ = model
        est._learning_rate, est._optimizer_ready = float(est.learning_rate_init), False
        est._load_sklearn_optimizer(getattr(estimator, "_optimizer", None))
        best = (getattr(estimator, "_best_coefs", None), getattr(estimator, "_best_intercepts", None))
        if est.early_stopping and best[0] is not None and best[1] is not None:
            est._best_weights = [np.array(a, dtype) for pair in zip(*best) for a in pair]  # copies
        else:
            est._best_weights = model.get_weights()
        # scikit-learn's stochastic bookkeeping, where it kept none (lbfgs)
        if not hasattr(est, "loss_curve_"):
            est.loss_curve_, est._no_improvement_count = [], 0
        if not hasattr(est, "best_loss_"):
            est.best_loss_ = None if est.early_stopping else np.inf
            est.validation_scores_ = [] if est.early_stopping else None
            est.best_validation_score_ = -np.inf if est.early_stopping else None
        # scikit-learn keeps no validation loss: NaN for each epoch it validated
        est.validation_loss_curve_ = ([np.nan] * len(est.validation_scores_)
                                      if est.validation_scores_ is not None else None)
        return est

    def _load_sklearn_optimizer(self, opt):
        """scikit-learn's optimizer into model_: its kind and settings (momentum, betas, eps, the
        SGD schedule), which its partial_fit keeps whatever set_params said since, then its state
        (slots, step counter, current rate)."""
        model = self.model_
        alpha = float(self.alpha)
        if isinstance(opt, _SkSGD):
            new = SklearnSGD(lr=float(opt.learning_rate_init), momentum=float(opt.momentum),
                             nesterov=bool(opt.nesterov), alpha=alpha)
            slots = [opt.velocities]
        elif isinstance(opt, _SkAdam):
            new = SklearnAdam(lr=float(self.learning_rate_init), beta1=float(opt.beta_1),
                              beta2=float(opt.beta_2), eps=float(opt.epsilon), alpha=alpha)
            slots = [opt.ms, opt.vs]
        else:
            return
        if type(new) is type(model.optimizer):
            model._swap_optimizer(new)
        else:  # solver was changed after scikit-learn's fit: its optimizer is of the other kind
            model.compile(new, loss=self._loss_name())
        built, n_params = model._require_built(), model.n_params
        dense = [i for i, ly in enumerate(model.layers) if "kernel" in ly.array_names()]
        for k, arrays in enumerate(slots):
            arrays = list(arrays)
            views = built.plan.views(built.slots[k * n_params:(k + 1) * n_params], built.state)
            targets = [views[i]["kernel"] for i in dense] + [views[i]["bias"] for i in dense]
            if len(arrays) != len(targets) or any(np.shape(a) != t.shape for a, t in zip(arrays, targets)):
                raise ValueError("the estimator's optimizer state does not match its weights")
            for t, a in zip(targets, arrays):
                t[...] = a
        if isinstance(opt, _SkSGD):
            self._sgd_policy = (opt.lr_schedule, float(opt.power_t))
            self._learning_rate = float(opt.learning_rate)
            model.lr_scale = self._learning_rate / float(opt.learning_rate_init)
        else:
            built.counters[CTR_STEP] = int(opt.t)
            model.lr_scale = float(opt.learning_rate_init) / float(self.learning_rate_init)
        self._optimizer_ready = True

    def to_sklearn(self):
        """The scikit-learn estimator of this fitted model: same parameters, weights, fitted
        attributes and optimizer state (partial_fit goes on as here), same predictions to rounding.

        Of fastnn's extras, those that leave inference as scikit-learn computes it convert, with a
        UserWarning that scikit-learn will train without them: dropout (the identity at
        inference), class_weight, and batch_norm, folded into the preceding Dense layer's weights
        and bias from its running statistics (the optimizer state then starts fresh). Per-layer
        activations, leaky_relu and the solvers adamw and rmsprop have no scikit-learn equivalent:
        ValueError. dtype and callbacks are not scikit-learn parameters and are left out (the
        weights keep the model's dtype)."""
        check_is_fitted(self)
        sk_cls = self._sklearn_class
        acts = self.activation if isinstance(self.activation, (list, tuple)) else [self.activation]
        refused = []
        if len(set(acts)) > 1:
            refused.append(f"one activation per hidden layer ({list(acts)})")
        elif acts and acts[0] not in _SK_ACTIVATIONS:
            refused.append(f"activation={acts[0]!r}")
        if self.solver not in ("lbfgs", "sgd", "adam"):
            refused.append(f"solver={self.solver!r}")
        if getattr(self, "loss", "squared_error") != "squared_error" and "loss" not in sk_cls._get_param_names():
            refused.append(f"loss={self.loss!r} (scikit-learn {sklearn.__version__} has no loss parameter; "
                           f"1.7 added it)")
        if refused:
            raise ValueError(f"{type(self).__name__}.to_sklearn: scikit-learn's {sk_cls.__name__} cannot "
                             f"express {' and '.join(refused)}")
        dropped = [name for name, on in (("dropout", any(self._dropout_rates(len(self._hidden())))),
                                         ("batch_norm", self.batch_norm),
                                         ("class_weight", getattr(self, "class_weight", None) is not None))
                   if on]
        if dropped:
            warnings.warn(f"{type(self).__name__}.to_sklearn: scikit-learn's {sk_cls.__name__} predicts "
                          f"the same, but trains on without {', '.join(dropped)}"
                          + (" (batch normalisation is folded into the Dense weights)" if self.batch_norm else ""),
                          UserWarning)
        names = sk_cls._get_param_names()
        params = {k: copy.deepcopy(v) for k, v in self.get_params(deep=False).items() if k in names}
        params["activation"] = acts[0] if acts else "relu"
        sk = sk_cls(**params)
        model = self.model_
        sk.coefs_, sk.intercepts_ = _dense_arrays(model.layers, model.get_weights(), model.dtype)
        for name in self._SK_FITTED + self._SK_FITTED_OWN:
            if name in self.__dict__:
                setattr(sk, name, copy.deepcopy(self.__dict__[name]))
        if "_label_binarizer" in sk.__dict__:
            sk.classes_ = sk._label_binarizer.classes_
        if self.early_stopping and getattr(self, "_best_weights", None) is not None:
            sk._best_coefs, sk._best_intercepts = _dense_arrays(model.layers, self._best_weights, model.dtype)
        if isinstance(model.optimizer, (SklearnSGD, SklearnAdam)) and getattr(self, "_optimizer_ready", False) \
                and not self.batch_norm:
            sk._optimizer = self._sklearn_optimizer(sk)
        return sk

    def _sklearn_optimizer(self, sk):
        """scikit-learn's SGDOptimizer / AdamOptimizer holding model_'s optimizer state."""
        model = self.model_
        built, n_params = model._require_built(), model.n_params
        params = sk.coefs_ + sk.intercepts_
        dense = [i for i, ly in enumerate(model.layers) if "kernel" in ly.array_names()]

        def slot(k):
            views = built.plan.views(built.slots[k * n_params:(k + 1) * n_params], built.state)
            return [views[i]["kernel"].copy() for i in dense] + [views[i]["bias"].copy() for i in dense]

        # a factor a callback (ReduceLROnPlateau) put on the rate, beyond scikit-learn's own
        mo = model.optimizer
        base = float(mo.lr)
        ours = self._learning_rate / base
        factor = 1.0 if model.lr_scale == ours or ours == 0 else model.lr_scale / ours
        if isinstance(mo, SklearnSGD):  # the optimizer's kind: solver may have changed since
            schedule, power_t = self._sgd_schedule(self)
            opt = _SkSGD(params, base, schedule, mo.momentum, mo.nesterov, power_t)
            opt.velocities = slot(0)
            opt.learning_rate = float(self._learning_rate) * factor
        else:  # scikit-learn's Adam derives its step from learning_rate_init
            opt = _SkAdam(params, base * factor, mo.beta1, mo.beta2, mo.eps)
            opt.ms, opt.vs = slot(0), slot(1)
            opt.t = int(built.counters[CTR_STEP])
        return opt


def _layout(model):
    """The parameters' layout of a built model: each layer's kind and array shapes."""
    built = model._built
    views = built.plan.views(built.params, built.state)
    return [(type(ly).__name__, sorted((k, a.shape) for k, a in v.items())) for ly, v in zip(model.layers, views)]


def _units_of(coefs, intercepts):
    """[n_in, hidden..., n_out] of scikit-learn's weight lists (their shapes checked)."""
    if not coefs or len(coefs) != len(intercepts):
        raise ValueError(f"the estimator has {len(coefs)} weight matrices and {len(intercepts)} bias "
                         f"vectors; expected as many of each, at least one")
    units = [np.shape(coefs[0])[0]] if np.ndim(coefs[0]) == 2 else []
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        if np.ndim(W) != 2 or np.shape(W)[0] != units[-1] or np.shape(b) != (np.shape(W)[1],):
            raise ValueError(f"the estimator's coefs_[{i}] {np.shape(W)} and intercepts_[{i}] "
                             f"{np.shape(b)} do not chain onto a layer of {units[-1] if units else '?'} units")
        units.append(np.shape(W)[1])
    return units


def _dense_arrays(layers, weights, dtype):
    """(coefs, intercepts) of the Dense layers from a get_weights() list, each BatchNorm folded into
    the Dense layer before it: W s, (b - mean) s + beta with s = gamma / sqrt(var + eps)."""
    it = iter(weights)
    arrays = [(ly, {n: next(it) for n in ly.array_names()}) for ly in layers]
    coefs, intercepts = [], []
    for ly, a in arrays:
        if "kernel" in a:
            coefs.append(a["kernel"].astype(np.float64))
            intercepts.append(a["bias"].astype(np.float64))
        elif isinstance(ly, BatchNorm):
            s = a["gamma"].astype(np.float64) / np.sqrt(a["running_var"].astype(np.float64) + ly.eps)
            coefs[-1] = coefs[-1] * s
            intercepts[-1] = (intercepts[-1] - a["running_mean"]) * s + a["beta"]
    return [c.astype(dtype) for c in coefs], [b.astype(dtype) for b in intercepts]


def _dense(X, dtype):
    """X as a dense C-contiguous array; a sparse X is densified once, straight into `dtype`."""
    if sp.issparse(X):
        X = X.tocsr()
        return sp.csr_matrix((cast_finite(X.data, dtype, "X"), X.indices, X.indptr), shape=X.shape).toarray(order="C")
    return X


def _fitted_width(est):
    """n_features_in_ where it is a whole number of at least 1 (as a fit sets it), else None: the
    shortcuts that skip validate_data compare X's width with it; anything else (set by hand to
    0, an array, a string) leaves the checks to validate_data."""
    n = getattr(est, "n_features_in_", None)
    return n if isinstance(n, Integral) and not isinstance(n, bool) and n >= 1 else None


def _fitted_plain(est, X):
    """X is a plain float ndarray (_plain_float), 2-D, of est's fitted width (_fitted_width)."""
    return _plain_float(X) and X.ndim == 2 and X.shape[1] == _fitted_width(est)


def _passes_as_is(est, X):
    """validate_data(est, X, reset=False) would return such an X (_fitted_plain) as it is and warn
    of nothing: X has a row at least, and est no feature names."""
    return X.shape[0] >= 1 and not hasattr(est, "feature_names_in_")


def _plain_classes(lb):
    """lb.classes_ where lb is a fitted LabelBinarizer as a fit leaves it (classes_ a 1-D ndarray),
    else None: the shortcuts past its transform and inverse_transform leave a binarizer edited by
    hand (classes_ a list, unfitted, None) to it, and to its errors."""
    classes = getattr(lb, "classes_", None)
    if type(lb) is LabelBinarizer and hasattr(lb, "y_type_") and type(classes) is np.ndarray and classes.ndim == 1:
        return classes
    return None


def _plain_float(X):
    """X is a plain ndarray (not a masked array or np.matrix) of float32 or float64: what
    validate_data keeps as it is, and the compiled check reads."""
    return type(X) is np.ndarray and X.dtype in FLOAT_DTYPES


def _known_finite(X):
    """True when X is a plain ndarray of float32 or float64 (kept as it is by validate_data;
    not a masked array or np.matrix) without NaN or infinity, by the backend's compiled check:
    validate_data's own check, a NumPy sum over X, can then be skipped, its outcome known (10 ms
    of a fit of MNIST's 60,000 rows, where the compiled check takes 4; 1.5 ms of a 6.4 ms
    predict_proba of 10,000 rows, on the 2-core Zen 5 VM). Any other X keeps scikit-learn's
    check, and so its error, in its order: before the feature count (whose record a refused fit
    would keep) and after the feature names."""
    return _plain_float(X) and _all_finite(X)


def _chunked(run, X):
    """run(X) for a sparse X, densified chunk by chunk, each at most _SPARSE_CHUNK_BYTES (or
    _MIN_CHUNK_ROWS rows), near-equal in size, so that none is a sliver of a few rows: the
    engine's GEMM sums 4 rows or fewer another way, and every chunk of more gives each row the
    bits the dense input gives it."""
    X = X.tocsr()
    n, d = X.shape
    rows = max(_MIN_CHUNK_ROWS, _SPARSE_CHUNK_BYTES // max(1, d * X.dtype.itemsize))
    k = -(-n // rows)
    bounds = [i * n // k for i in range(k + 1)]
    out = None
    for start, stop in zip(bounds[:-1], bounds[1:]):
        part = run(X[start:stop].toarray())
        if out is None:
            out = np.empty((n,) + part.shape[1:], part.dtype)
        out[start:stop] = part
    return out if out is not None else run(X.toarray())


def _is_terminal():
    try:
        return bool(sys.stdout.isatty())
    except Exception:
        return False


_EXTRA_DOC = """
    Beyond scikit-learn (keyword-only; the defaults give scikit-learn's model):
    dropout : float or list of floats, default 0 -- dropout rate after each hidden layer.
    batch_norm : bool, default False -- batch normalisation between each hidden Dense layer and
        its activation.
    activation may also be 'leaky_relu', or a list of one activation per hidden layer.
    solver may also be 'adamw' (decoupled weight decay 0.01) or 'rmsprop'.
    class_weight : 'balanced', dict or None (classifier only) -- multiplies the sample weights.
    dtype : 'float32', 'float64' or None -- the model's dtype; None keeps float32 input in float32
        (the fast path) and trains anything else in float64, as scikit-learn does.
    n_threads : int or None -- at most this many threads for this estimator's compiled calls
        (fit, predict), whatever fastnn.set_num_threads says; None: fastnn's count.
    callbacks : list of fastnn callbacks, called after scikit-learn's bookkeeping each epoch;
        with early_stopping their logs also hold 'val_loss' (the objective on the validation
        rows) and the validation score, 'val_accuracy' (classifier) or 'val_r2' (regressor).
    verbose also shows a live progress bar while each epoch runs, when the output is a terminal.
    solver='lbfgs' runs in the model's dtype as scikit-learn's runs in X's (float32 input: float32
        evaluations, but coefs_ stay float32 where scikit-learn's come back float64); it refuses
        dropout > 0, batch_norm=True (no mini-batch statistics or running averages in a full-batch
        fit) and callbacks (no epochs), and ignores early_stopping, as scikit-learn does.

    X may be sparse (scipy.sparse): fit densifies it once in the model's dtype, predictions chunk
    by chunk. from_sklearn(fitted) and to_sklearn() convert fitted models both ways.

    Fitted beyond scikit-learn: model_ (the fastnn Sequential), history_ (its History),
    validation_loss_curve_ (with early_stopping: the objective on the validation set per epoch).
"""


def _doc(ours, theirs):
    """The class docstring: ours, then scikit-learn's own, which documents the shared parameters
    and attributes."""
    return ours + _EXTRA_DOC + "\n    scikit-learn's documentation of the shared parameters follows.\n\n    " + \
        (theirs.__doc__ or "").lstrip()


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = _doc("""scikit-learn's MLPClassifier (same parameters, same fit) trained by fastnn's engine.
    """, _SkMLPClassifier)

    _parameter_constraints: dict = _constraints(_SkMLPClassifier._parameter_constraints)
    _sklearn_class = _SkMLPClassifier
    _SK_FITTED_OWN = ("_label_binarizer",)

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, dropout=0.0, batch_norm=False,
                 class_weight=None, dtype=None, n_threads=None, callbacks=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.class_weight = class_weight
        self.dtype = dtype
        self.n_threads = n_threads
        self.callbacks = callbacks

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to X (n_samples, n_features) and labels y; returns self."""
        return self._fit(X, y, sample_weight)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over X, y (scikit-learn's partial_fit); `classes` is required on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def _validate_input(self, X, y, incremental, reset):
        plain = self._plain_xy(X, y, reset, "iuU")
        X, y = plain or validate_data(self, X, y, accept_sparse=_SPARSE, multi_output=True,
                                      dtype=(np.float64, np.float32), reset=reset,
                                      ensure_all_finite=not _known_finite(X))
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            Y = self._known_labels(y) if incremental and not self.warm_start else None
            if Y is not None:  # every label is one of classes_: nothing to refuse
                return X, Y
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as in "
                                     f"the previous call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError("`y` has classes not in `self.classes_`. "
                                 f"`self.classes_` has {self.classes_}. 'y' has {classes}.")
        Y = self._known_labels(y)
        return X, Y if Y is not None else self._label_binarizer.transform(y).astype(bool)

    def _known_labels(self, y):
        """LabelBinarizer.transform(y).astype(bool) where y is a plain 1-D array of integers or
        strings whose every label is one of classes_ (one column a class, one column for two), by
        a search in the sorted classes_; None otherwise, and the binarizer decides. Its checks of
        y's kind took 1.1 of the 1.5 ms of a partial_fit of 200 MNIST rows (the step itself: 0.37;
        2-core Zen 5 VM)."""
        lb = self._label_binarizer
        classes = _plain_classes(lb)
        kinds = {"i": "iu", "u": "iu", "U": "U"}
        # the encoding its transform picks from the number of classes: 3 or more one column each,
        # 2 one column (a y_type_ that says otherwise is left to it)
        if (classes is None or (lb.y_type_, min(len(classes), 3)) not in (("multiclass", 3), ("binary", 2))
                or type(y) is not np.ndarray or y.ndim != 1 or y.dtype.kind not in kinds.get(classes.dtype.kind, "")):
            return None
        mine = self.classes_  # what partial_fit checks labels against: set by hand, it decides
        if mine is not classes and not (type(mine) is np.ndarray and mine.shape == classes.shape and
                                        mine.dtype == classes.dtype and (mine == classes).all()):
            return None
        idx = np.searchsorted(classes, y)
        if not (idx < len(classes)).all() or not (classes[idx] == y).all():
            return None
        if lb.y_type_ == "binary":
            return (idx == 1).reshape(-1, 1)
        Y = np.zeros((len(y), len(classes)), bool)
        Y[np.arange(len(y)), idx] = True
        return Y

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _loss_name(self):
        return "sklearn_log_loss" if self.out_activation_ == "softmax" else "sklearn_binary_log_loss"

    def _engine_targets(self, Y, dtype):
        """(T, labels) for the model: class indices under softmax, 0/1 columns otherwise."""
        if self.out_activation_ == "softmax":
            return None, np.ascontiguousarray(np.argmax(Y, axis=1), dtype=np.int64)
        return np.ascontiguousarray(Y, dtype=dtype), None

    def _check_class_weight(self, incremental):
        """Refuse what class_weight cannot do before anything is built."""
        if self.class_weight is None:
            return
        if self._label_binarizer.y_type_.startswith("multilabel"):
            raise ValueError("class_weight is not supported for multi-label y")
        if incremental and self.class_weight == "balanced":
            raise ValueError("class_weight 'balanced' is not supported for partial_fit: its weights "
                             "depend on the whole data; pass a dict of class weights instead")
        if isinstance(self.class_weight, dict):
            cw = compute_class_weight(self.class_weight, classes=self.classes_, y=self.classes_)
            if not (np.isfinite(cw) & (cw >= 0)).all():
                raise ValueError(f"class_weight must give each class a finite weight >= 0, got "
                                 f"{self.class_weight!r}")

    def _weighted(self, Y, sample_weight, incremental):
        """sample_weight times class_weight (of each row's class)."""
        if self.class_weight is None:
            return sample_weight
        idx = np.argmax(Y, axis=1) if Y.shape[1] > 1 else Y[:, 0].astype(np.int64)
        present = np.unique(idx)
        cw = np.ones(len(self.classes_))
        if self.class_weight == "balanced":
            cw[present] = compute_class_weight("balanced", classes=present, y=idx)
        else:
            cw = compute_class_weight(self.class_weight, classes=self.classes_, y=self.classes_[idx])
        w = cw[idx]
        return w if sample_weight is None else w * sample_weight

    _score_function = staticmethod(accuracy_score)

    def predict(self, X):
        """Predicted classes (n_samples,) or label indicators (n_samples, n_classes)."""
        check_is_fitted(self)
        return self._predict_checked(X, check_input=True)

    def _predict_checked(self, X, check_input=False):
        y_pred = self._forward_pass_fast(X, check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        lb = self._label_binarizer
        classes = _plain_classes(lb)
        if (classes is not None and lb.y_type_ == "multiclass" and not lb.sparse_input_ and len(classes) > 0
                and type(y_pred) is np.ndarray and y_pred.ndim == 2):
            # LabelBinarizer.inverse_transform's own result (the class of each row's first largest
            # probability), without its namespace and clip wrappers: 30 us of a predict of one row
            return classes.take(y_pred.argmax(axis=1), mode="clip")
        return lb.inverse_transform(y_pred)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in classes_ order."""
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X):
        """Logarithm of predict_proba."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = _doc("""scikit-learn's MLPRegressor (same parameters, same fit) trained by fastnn's engine.
    """, _SkMLPRegressor)

    _parameter_constraints: dict = _constraints(_SkMLPRegressor._parameter_constraints)
    _parameter_constraints.pop("class_weight")
    _parameter_constraints["loss"] = [StrOptions({"squared_error", "poisson"})]  # 1.7's, absent in 1.6
    _sklearn_class = _SkMLPRegressor
    _SK_FITTED_OWN = ()

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, batch_norm=False, dtype=None, n_threads=None, callbacks=None):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.dtype = dtype
        self.n_threads = n_threads
        self.callbacks = callbacks

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to X (n_samples, n_features) and targets y; returns self."""
        return self._fit(X, y, sample_weight)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over X, y (scikit-learn's partial_fit)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _validate_input(self, X, y, incremental, reset):
        plain = self._plain_xy(X, y, reset, "fiu")
        X, y = plain or validate_data(self, X, y, accept_sparse=_SPARSE, multi_output=True, y_numeric=True,
                                      dtype=(np.float64, np.float32), reset=reset,
                                      ensure_all_finite=not _known_finite(X))
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _out_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _loss_name(self):
        return "sklearn_" + self.loss

    def _engine_targets(self, y, dtype):
        return cast_finite(np.asarray(y).reshape(len(y), -1), dtype, "y"), None

    _score_function = staticmethod(r2_score)

    def predict(self, X):
        """Predicted values (n_samples,) or (n_samples, n_outputs)."""
        check_is_fitted(self)
        return self._predict_checked(X, check_input=True)

    def _predict_checked(self, X, check_input=False):
        y_pred = self._forward_pass_fast(X, check_input)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred


from .files import estimator_file as _estimator_file  # noqa: E402  (save, load and to_onnx)

_estimator_file.register()
if "skl2onnx" in sys.modules:  # already imported: skl2onnx.convert_sklearn converts ours too
    from .files import onnx_sklearn as _onnx_sklearn
    _onnx_sklearn.register()

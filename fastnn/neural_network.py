"""scikit-learn drop-ins: MLPClassifier and MLPRegressor trained by fastnn's engine.

Same parameters (names, defaults, order), validation, initial weights, batch order, updates,
losses, stopping rule, messages and fitted attributes as scikit-learn 1.9's
sklearn.neural_network estimators: on float64 data a fit equals scikit-learn's to rounding
(tests/test_neural_network.py). The engine runs each epoch in C with scikit-learn's conventions
switched on (codes.SK_LOSSES, OPTIM.form = sklearn, OPTIM.l2_loss = alpha, the caller's order).

Not yet supported (this first slice): solver='lbfgs', sparse X.
Needs scikit-learn (pip install fastnn[sklearn]).
"""
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context, is_classifier
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as _SkMLPClassifier
from sklearn.neural_network import MLPRegressor as _SkMLPRegressor
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._available_if import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils import shuffle as _sk_shuffle
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._engine import activations as _activations
from ._engine.codes import FORMS, N_COUNTERS, N_SLOTS, OPTIMIZERS, ORDERS, SK_LOSSES
from ._engine.records import layer_records, net_record, optim_record, result_record

__all__ = ["MLPClassifier", "MLPRegressor"]


def _pairs(seq):
    """(seq[0], seq[1]), (seq[1], seq[2]), ...: itertools.pairwise, which Python 3.9 lacks."""
    return list(zip(seq[:-1], seq[1:]))


def _sk_epoch_trainer(units, activation, loss, dtype, batch):
    """Engine for a dense MLP of `units` with scikit-learn's layout (weights of every layer first,
    layer by layer, then the biases; the output layer linear, its link in the loss).

    Returns (engine, offsets): offsets[i]:offsets[i+1] are coefs_[i] for i < L, then the intercepts.
    This private helper is to move into the model layer (fastnn/nn: a Sequential driven in a
    given order with scikit-learn's losses and optimizer form) once that path exists.
    """
    from . import _engine as backend

    pairs = _pairs(units)
    n_w = sum(a * b for a, b in pairs)
    layers, w_off, b_off = [], 0, n_w
    for i, (a, b) in enumerate(pairs):
        last = i == len(pairs) - 1
        layers.append(dict(kind=0, activation=0 if last else _activations.get(activation).code,
                           n_in=a, n_out=b, w_off=w_off, b_off=b_off))
        w_off, b_off = w_off + a * b, b_off + b
    net = net_record(loss=SK_LOSSES[loss], n_inputs=units[0], n_outputs=units[-1], n_params=b_off,
                     n_decay=n_w)
    engine = backend.current().Engine(layer_records(layers), net, dtype, batch)
    offsets = np.cumsum([0] + [a * b for a, b in pairs] + list(units[1:]))
    return engine, offsets


def _forward(X, coefs, intercepts, activation, out_activation):
    """scikit-learn's _forward_pass_fast: the output layer's activation (probabilities, means)."""
    a = X
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        a = a @ W
        a += b
        if i < len(coefs) - 1:
            _apply(activation, a)
    _apply(out_activation, a)
    return a


def _apply(name, z):
    if name == "relu":
        np.maximum(z, 0, out=z)
    elif name == "tanh":
        np.tanh(z, out=z)
    elif name == "logistic":
        from scipy.special import expit
        expit(z, out=z)
    elif name == "exp":
        np.exp(z, out=z)
    elif name == "softmax":
        z -= z.max(axis=1)[:, None]
        np.exp(z, out=z)
        z /= z.sum(axis=1)[:, None]


class _BaseMLP(BaseEstimator):
    """Shared fit: scikit-learn's _fit / _fit_stochastic with each epoch run by the engine."""

    def _unpack(self, params, offsets, units):
        """coefs_ and intercepts_ (copies) from the flat parameter buffer."""
        pieces = [params[lo:hi].copy() for lo, hi in _pairs(offsets)]
        L = len(units) - 1
        self.coefs_ = [p.reshape(a, b) for p, (a, b) in zip(pieces[:L], _pairs(units))]
        self.intercepts_ = pieces[L:]

    def _check_supported(self):
        if self.solver == "lbfgs":
            raise NotImplementedError("fastnn's MLP estimators do not support solver='lbfgs' yet "
                                      "(use 'sgd' or 'adam', or sklearn.neural_network)")

    def _check_solver(self):
        if self.solver not in ("sgd", "adam"):
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 "%s is not stochastic." % self.solver)
        return True

    def _fit(self, X, y, sample_weight=None, incremental=False):
        self._check_supported()
        hidden = self.hidden_layer_sizes
        if not hasattr(hidden, "__iter__"):
            hidden = [hidden]
        hidden = list(hidden)
        if np.any(np.array(hidden) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)

        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        n, n_features = X.shape
        X = np.ascontiguousarray(X)
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(_check_sample_weight(sample_weight, X), dtype=X.dtype)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        units = [n_features] + hidden + [self.n_outputs_]
        rs = check_random_state(self.random_state)

        if first_pass:  # scikit-learn's _initialize
            self.n_iter_, self.t_ = 0, 0
            self.n_layers_ = len(units)
            self.out_activation_ = self._out_activation()
            factor = 2.0 if self.activation == "logistic" else 6.0
            self.coefs_, self.intercepts_ = [], []
            for a, b in _pairs(units):  # _init_coef, layer by layer
                bound = np.sqrt(factor / (a + b))
                self.coefs_.append(rs.uniform(-bound, bound, (a, b)).astype(X.dtype, copy=False))
                self.intercepts_.append(rs.uniform(-bound, bound, b).astype(X.dtype, copy=False))
            self._best_coefs = [c.copy() for c in self.coefs_]
            self._best_intercepts = [i.copy() for i in self.intercepts_]
            self.loss_curve_, self._no_improvement_count = [], 0
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
            else:
                self.best_loss_, self.validation_scores_, self.best_validation_score_ = np.inf, None, None

        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:  # scikit-learn's split, from the same RandomState
            stratify = y if (is_classifier(self) and self.n_outputs_ == 1) else None
            if sample_weight is None:
                X, X_val, y, y_val = train_test_split(X, y, random_state=rs, test_size=self.validation_fraction,
                                                      stratify=stratify)
                sw_val = None
            else:
                X, X_val, y, y_val, sample_weight, sw_val = train_test_split(
                    X, y, sample_weight, random_state=rs, test_size=self.validation_fraction, stratify=stratify)
                sample_weight = np.ascontiguousarray(sample_weight)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
            X = np.ascontiguousarray(X)
            n = X.shape[0]

        if self.batch_size == "auto":
            batch = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch = int(np.clip(self.batch_size, 1, n))

        loss, T, labels = self._engine_targets(y, X.dtype)
        engine, offsets = _sk_epoch_trainer(units, self.activation, loss, X.dtype, batch)
        params = np.concatenate([c.ravel() for c in self.coefs_] + self.intercepts_).astype(X.dtype)
        kind = OPTIMIZERS["adam" if self.solver == "adam" else "sgd"]
        if not incremental or not hasattr(self, "_optimizer_state"):  # a new optimizer, as sklearn's
            self._optimizer_state = {"slots": np.zeros(N_SLOTS[kind] * params.size, X.dtype),
                                     "counters": np.zeros(N_COUNTERS, np.int64),
                                     "lr": float(self.learning_rate_init)}
        opt_state = self._optimizer_state
        slots = opt_state["slots"] = np.ascontiguousarray(opt_state["slots"], dtype=X.dtype)
        counters, lr = opt_state["counters"], opt_state["lr"]
        state = np.zeros(1, X.dtype)
        idx = np.arange(n, dtype=int)
        sgd = self.solver == "sgd"

        self.n_iter_ = 0
        for epoch in range(self.max_iter):
            if self.shuffle:
                idx = _sk_shuffle(idx, random_state=rs)
            if sgd:
                optim = optim_record(kind=kind, lr=lr, momentum=float(self.momentum),
                                     nesterov=int(bool(self.nesterovs_momentum)),
                                     l2_loss=float(self.alpha), form=FORMS["sklearn"])
            else:
                optim = optim_record(kind=kind, lr=lr, beta1=float(self.beta_1), beta2=float(self.beta_2),
                                     eps=float(self.epsilon), l2_loss=float(self.alpha), form=FORMS["sklearn"])
            res = result_record()
            status, exc = engine.train_epoch(res, params, slots, state, counters, idx.astype(np.int64),
                                             optim, X, T, labels, sample_weight, batch, ORDERS["given"], epoch)
            if exc is not None:
                raise exc
            if status != "ok":
                raise ValueError("Solver produced non-finite parameter weights. The input data may"
                                 " contain large values and need to be preprocessed.")
            self.n_iter_ += 1
            self.loss_ = float(res["loss_sum"] / res["weight_sum"])
            self.t_ += n
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
            # _update_no_improvement_count
            if early_stopping:  # the validation score of this epoch's weights
                self._unpack(params, offsets, units)
                y_pred = self._predict_checked(X_val)
                if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
                    score = np.nan
                else:
                    score = self._score_function(y_val, y_pred, sample_weight=sw_val)
                self.validation_scores_.append(score)
                if self.verbose:
                    print("Validation score: %f" % self.validation_scores_[-1])
                if score < self.best_validation_score_ + self.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                if score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    self._best_coefs = [c.copy() for c in self.coefs_]
                    self._best_intercepts = [i.copy() for i in self.intercepts_]
            else:
                if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                if self.loss_curve_[-1] < self.best_loss_:
                    self.best_loss_ = self.loss_curve_[-1]
            # SGDOptimizer.iteration_ends
            if sgd and self.learning_rate == "invscaling":
                lr = float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
            if self._no_improvement_count > self.n_iter_no_change:
                if early_stopping:
                    msg = ("Validation score did not improve more than tol=%f for %d consecutive epochs."
                           % (self.tol, self.n_iter_no_change))
                else:
                    msg = ("Training loss did not improve more than tol=%f for %d consecutive epochs."
                           % (self.tol, self.n_iter_no_change))
                if sgd and self.learning_rate == "adaptive":  # SGDOptimizer.trigger_stopping
                    if lr <= 1e-6:
                        if self.verbose:
                            print(msg + " Learning rate too small. Stopping.")
                        break
                    lr /= 5.0
                    if self.verbose:
                        print(msg + " Setting learning rate to %f" % lr)
                    self._no_improvement_count = 0
                else:
                    if self.verbose:
                        print(msg + " Stopping.")
                    break
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                              "optimization hasn't converged yet." % self.max_iter, ConvergenceWarning)

        opt_state["lr"] = lr
        self._unpack(params, offsets, units)
        if early_stopping:  # the best validation epoch's weights
            self.coefs_, self.intercepts_ = self._best_coefs, self._best_intercepts
        return self

    def _forward_pass_fast(self, X, check_input=True):
        if check_input:
            X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        return _forward(X, self.coefs_, self.intercepts_, self.activation, self.out_activation_)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """scikit-learn's MLPClassifier (same parameters, same fit) trained by fastnn's engine.

    See sklearn.neural_network.MLPClassifier; solver='lbfgs' is not supported yet
    (NotImplementedError)."""

    _parameter_constraints: dict = _SkMLPClassifier._parameter_constraints

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000):
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
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as in "
                                     f"the previous call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError("`y` has classes not in `self.classes_`. "
                                 f"`self.classes_` has {self.classes_}. 'y' has {classes}.")
        return X, self._label_binarizer.transform(y).astype(bool)

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _engine_targets(self, y, dtype):
        if self.out_activation_ == "softmax":
            return "sk_log_loss", None, np.ascontiguousarray(np.argmax(y, axis=1), dtype=np.int64)
        return "sk_binary_log_loss", np.ascontiguousarray(y, dtype=dtype), None

    _score_function = staticmethod(accuracy_score)

    def predict(self, X):
        """Predicted classes (n_samples,) or label indicators (n_samples, n_classes)."""
        check_is_fitted(self)
        return self._predict_checked(X, check_input=True)

    def _predict_checked(self, X, check_input=False):
        y_pred = self._forward_pass_fast(X, check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

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
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)


    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """scikit-learn's MLPRegressor (same parameters, same fit) trained by fastnn's engine.

    See sklearn.neural_network.MLPRegressor; solver='lbfgs' is not supported yet
    (NotImplementedError)."""

    _parameter_constraints: dict = _SkMLPRegressor._parameter_constraints

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000):
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
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _out_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _engine_targets(self, y, dtype):
        return "sk_" + self.loss, np.ascontiguousarray(y, dtype=dtype), None

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


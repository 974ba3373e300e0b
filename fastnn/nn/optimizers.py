"""Optimizers: configuration records. The updates themselves run in the engine
(csrc/optimizers.c, or fastnn/_engine/reference.py), one loop over the flat parameter buffer.

Penalties apply to weights (Dense kernels) only, never to biases or batch-norm parameters:
  l2, l1        coupled: added to the gradient (g + l2 w + l1 sign(w))
  weight_decay  decoupled (AdamW, SGDW): w *= 1 - lr * weight_decay before the step
  alpha         scikit-learn's L2 term of the objective: each batch's loss gains
                0.5 alpha |W|^2 / S and its weight gradient alpha W / S (S: the batch's
                sample-weight sum, its row count when unweighted); the loss reported includes it

Every optimizer takes its rate as `lr` (PyTorch's name) or `learning_rate` (Keras's); it is
stored, and written in configs, as lr.

SklearnSGD and SklearnAdam apply scikit-learn's forms of the updates (its
_stochastic_optimizers.py): momentum as a velocity of steps, v = mu v - lr g, and Adam's bias
correction folded into the step size with eps outside it. fastnn's scikit-learn estimators train
with them; with a constant rate SklearnSGD equals SGD, and SklearnAdam differs from Adam only in
where eps enters.
"""
import functools
import inspect

from .._engine.codes import FORMS, N_SLOTS, OPTIMIZERS
from ._config import Boolean, Configurable, Frozen, InstanceOf, Interval, NoneOk, Options, Real, validate
from .schedules import _SCHEDULE_NAMES, Schedule, get_schedule

_RATE = [Interval(Real, 0, None, closed="neither")]
_PENALTY = [Interval(Real, 0, None)]
_UNIT = [Interval(Real, 0, 1, closed="left")]
_SCHEDULE = [NoneOk(), InstanceOf(Schedule), Options(tuple(_SCHEDULE_NAMES))]


_UNSET = object()


class Optimizer(Frozen, Configurable):
    """Base class. Optimizers are immutable once made (see Frozen)."""

    _abstract = True

    kind = None
    form = "torch"  # the updates' form (codes.FORMS); "sklearn" in SklearnSGD, SklearnAdam

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        init = cls.__dict__.get("__init__")
        if init is None or "learning_rate" in inspect.signature(init).parameters:
            return  # inherited (already wrapped), or a subclass that takes learning_rate itself

        @functools.wraps(init)  # the signature (and so the config) stays the constructor's own
        def __init__(self, *args, learning_rate=_UNSET, **kwargs):
            if learning_rate is not _UNSET:  # Keras's name for lr
                if args or "lr" in kwargs:
                    raise TypeError(f"{type(self).__name__}: give the rate once, as lr or as learning_rate")
                kwargs["lr"] = learning_rate
            init(self, *args, **kwargs)
        cls.__init__ = __init__
    _parameter_constraints = {"lr": _RATE, "l2": _PENALTY, "l1": _PENALTY, "alpha": _PENALTY,
                              "weight_decay": _PENALTY, "schedule": _SCHEDULE,
                              "momentum": _UNIT, "nesterov": [Boolean()], "beta1": _UNIT,
                              "beta2": _UNIT, "eps": _RATE, "rho": _UNIT}

    def _set(self, **params):
        validate(self, params)
        object.__setattr__(self, "schedule", get_schedule(self.schedule))
        if getattr(self.schedule, "lr_min", 0.0) > self.lr:
            raise ValueError(f"CosineDecay's lr_min ({self.schedule.lr_min}) is above the learning rate "
                             f"({self.lr}) it decays from")

    def _restored(self):  # a schedule pickled by name (the constructor's argument) made a Schedule
        object.__setattr__(self, "schedule", get_schedule(self.schedule))
        super()._restored()

    @property
    def n_slots(self):
        """State arrays mirroring the parameters (velocity; Adam's m and v; RMSprop's s)."""
        return N_SLOTS[OPTIMIZERS[self.kind]]

    def engine_fields(self, horizon=0):
        """The fields of the engine's optimizer record (csrc/fastnn.h fnn_optim); `horizon` is the
        step count a CosineDecay without total_steps decays over."""
        s = self.schedule
        sched = s.engine_fields(horizon) if s.name == "cosine" else s.engine_fields()
        return {"kind": OPTIMIZERS[self.kind], "lr": self.lr, "l2": self.l2, "l1": self.l1,
                "weight_decay": self.weight_decay, "l2_loss": self.alpha, "form": FORMS[self.form],
                **self._extra(), **sched}

    def _extra(self):
        return {}

    def __repr__(self):
        text = super().__repr__()
        return text.replace(", schedule=Constant()", "").replace("(schedule=Constant())", "()")


class SGD(Optimizer):
    """Stochastic gradient descent, optional momentum (PyTorch's form v = mu v + g) and Nesterov."""

    kind = "sgd"

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, l2=0.0, l1=0.0, weight_decay=0.0,
                 schedule=None, alpha=0.0):
        self._set(lr=lr, momentum=momentum, nesterov=nesterov, l2=l2, l1=l1,
                  weight_decay=weight_decay, schedule=schedule, alpha=alpha)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        self._freeze()

    def _extra(self):
        return {"momentum": self.momentum, "nesterov": int(self.nesterov)}


class Adam(Optimizer):
    """Adam (Kingma & Ba); with weight_decay > 0 it is AdamW (decoupled decay)."""

    kind = "adam"

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, l2=0.0, l1=0.0, weight_decay=0.0,
                 schedule=None, alpha=0.0):
        self._set(lr=lr, beta1=beta1, beta2=beta2, eps=eps, l2=l2, l1=l1,
                  weight_decay=weight_decay, schedule=schedule, alpha=alpha)
        self._freeze()

    def _extra(self):
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), default weight_decay 0.01."""

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, l2=0.0, l1=0.0,
                 schedule=None, alpha=0.0):
        super().__init__(lr, beta1, beta2, eps, l2, l1, weight_decay, schedule, alpha)


class RMSprop(Optimizer):
    """RMSprop: s = rho s + (1 - rho) g^2; p -= lr g / (sqrt(s) + eps)."""

    kind = "rmsprop"

    def __init__(self, lr=1e-3, rho=0.9, eps=1e-8, l2=0.0, l1=0.0, weight_decay=0.0, schedule=None,
                 alpha=0.0):
        self._set(lr=lr, rho=rho, eps=eps, l2=l2, l1=l1, weight_decay=weight_decay,
                  schedule=schedule, alpha=alpha)
        self._freeze()

    def _extra(self):
        return {"rho": self.rho, "eps": self.eps}


class SklearnSGD(SGD):
    """scikit-learn's SGDOptimizer: v = mu v - lr g; p += v (Nesterov: p += mu v - lr g; with
    momentum 0 both are plain SGD). scikit-learn's defaults (momentum 0.9, Nesterov, alpha 1e-4)."""

    form = "sklearn"

    def __init__(self, lr=0.001, momentum=0.9, nesterov=True, l2=0.0, l1=0.0, weight_decay=0.0,
                 schedule=None, alpha=0.0001):
        self._set(lr=lr, momentum=momentum, nesterov=nesterov, l2=l2, l1=l1,
                  weight_decay=weight_decay, schedule=schedule, alpha=alpha)
        self._freeze()


class SklearnAdam(Adam):
    """scikit-learn's AdamOptimizer: lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t);
    p -= lr_t m / (sqrt(v) + eps). scikit-learn's defaults (alpha 1e-4)."""

    form = "sklearn"

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, l2=0.0, l1=0.0, weight_decay=0.0,
                 schedule=None, alpha=0.0001):
        super().__init__(lr, beta1, beta2, eps, l2, l1, weight_decay, schedule, alpha)


_OPTIMIZER_NAMES = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get_optimizer(opt, **kwargs):
    if isinstance(opt, Optimizer):
        if kwargs:
            raise TypeError("pass hyper-parameters to the optimizer object, not beside it")
        return opt
    if isinstance(opt, str) and opt.lower() in _OPTIMIZER_NAMES:
        return _OPTIMIZER_NAMES[opt.lower()](**kwargs)
    raise ValueError(f"unknown optimizer {opt!r}; choose one of {sorted(_OPTIMIZER_NAMES)} or an Optimizer")

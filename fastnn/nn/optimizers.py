"""Optimizers and learning-rate schedules: configuration objects. The updates themselves run in
the engine (csrc/optimizers.c, or fastnn/_engine/reference.py), one loop over the flat parameter buffer.

Penalties apply to weights (Dense kernels) only, never to biases or batch-norm parameters:
  l2, l1        coupled: added to the gradient (g + l2 w + l1 sign(w))
  weight_decay  decoupled (AdamW, SGDW): w *= 1 - lr * weight_decay before the step
"""
import math

from .._engine.codes import OPTIMIZERS, SCHEDULES
from .._engine.records import optim_record


class Schedule:
    """Learning-rate schedule; see the subclasses. All are evaluated inside the engine."""

    name = "constant"

    def _fields(self):
        return {}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._fields().items())})"


class Constant(Schedule):
    name = "constant"


class StepDecay(Schedule):
    """lr * gamma ** (epoch // step_size)"""

    name = "step"

    def __init__(self, step_size=10, gamma=0.1):
        if step_size < 1:
            raise ValueError("StepDecay step_size must be >= 1")
        self.step_size, self.gamma = int(step_size), float(gamma)

    def _fields(self):
        return {"step_size": self.step_size, "gamma": self.gamma}


class ExponentialDecay(Schedule):
    """lr * gamma ** epoch"""

    name = "exponential"

    def __init__(self, gamma=0.95):
        self.gamma = float(gamma)

    def _fields(self):
        return {"gamma": self.gamma}


class CosineDecay(Schedule):
    """lr_min + (lr - lr_min) (1 + cos(pi t / T)) / 2 per optimizer step t; T defaults to the
    number of steps of the fit (epochs x batches per epoch)."""

    name = "cosine"

    def __init__(self, lr_min=0.0, total_steps=None):
        self.lr_min = float(lr_min)
        self.total_steps = None if total_steps is None else int(total_steps)

    def _fields(self):
        return {"lr_min": self.lr_min, "total_steps": self.total_steps}


class InvScaling(Schedule):
    """scikit-learn's 'invscaling': lr / (samples_seen + 1) ** power_t, updated each epoch."""

    name = "invscaling"

    def __init__(self, power_t=0.5):
        self.power_t = float(power_t)

    def _fields(self):
        return {"power_t": self.power_t}


class Adaptive(Schedule):
    """scikit-learn's 'adaptive': lr is divided by `factor` each time the training loss fails to
    decrease by at least `tol` for `patience` consecutive epochs."""

    name = "adaptive"

    def __init__(self, factor=5.0, tol=1e-4, patience=2):
        self.factor, self.tol, self.patience = float(factor), float(tol), int(patience)

    def _fields(self):
        return {"factor": self.factor, "tol": self.tol, "patience": self.patience}


_SCHEDULE_NAMES = {"constant": Constant, "step": StepDecay, "exponential": ExponentialDecay,
                   "cosine": CosineDecay, "invscaling": InvScaling, "adaptive": Adaptive}


def get_schedule(s):
    if s is None:
        return Constant()
    if isinstance(s, Schedule):
        return s
    if isinstance(s, str) and s in _SCHEDULE_NAMES:
        return _SCHEDULE_NAMES[s]()
    raise ValueError(f"unknown schedule {s!r}; choose one of {sorted(_SCHEDULE_NAMES)} or a Schedule")


class Optimizer:
    kind = None

    def __init__(self, lr, l2=0.0, l1=0.0, weight_decay=0.0, schedule=None):
        for name, v in (("lr", lr), ("l2", l2), ("l1", l1), ("weight_decay", weight_decay)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {v!r}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, not {lr!r}")
        self.lr, self.l2, self.l1, self.weight_decay = float(lr), float(l2), float(l1), float(weight_decay)
        self.schedule = get_schedule(schedule)

    def _extra(self):
        return {}

    def config(self, total_steps=0, lr_scale=1.0):
        """The OPTIM record the engine reads (fnn_optim)."""
        s = self.schedule
        cfg = {"kind": OPTIMIZERS[self.kind], "nesterov": 0, "lr": self.lr, "momentum": 0.0,
               "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "rho": 0.99, "l2": self.l2, "l1": self.l1,
               "weight_decay": self.weight_decay, "schedule": SCHEDULES[s.name],
               "gamma": getattr(s, "gamma", 1.0), "power_t": getattr(s, "power_t", 0.5),
               "lr_min": getattr(s, "lr_min", 0.0), "lr_scale": float(lr_scale),
               "step_size": getattr(s, "step_size", 1),
               "total_steps": int(getattr(s, "total_steps", None) or total_steps)}
        cfg.update(self._extra())
        return optim_record(**cfg)

    @property
    def n_slots(self):
        return {"sgd": 1, "adam": 2, "rmsprop": 1}[self.kind]

    def __repr__(self):
        f = {"lr": self.lr, **self._extra()}
        f.pop("kind", None)
        for k in ("l2", "l1", "weight_decay"):
            if getattr(self, k):
                f[k] = getattr(self, k)
        if self.schedule.name != "constant":
            f["schedule"] = self.schedule
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in f.items())})"


class SGD(Optimizer):
    """Stochastic gradient descent, optional momentum (PyTorch's form v = mu v + g) and Nesterov."""

    kind = "sgd"

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, l2=0.0, l1=0.0, weight_decay=0.0,
                 schedule=None):
        super().__init__(lr, l2, l1, weight_decay, schedule)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), not {momentum!r}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def _extra(self):
        return {"momentum": self.momentum, "nesterov": int(self.nesterov)}


class Adam(Optimizer):
    """Adam (Kingma & Ba); with weight_decay > 0 it is AdamW (decoupled decay)."""

    kind = "adam"

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, l2=0.0, l1=0.0, weight_decay=0.0,
                 schedule=None):
        super().__init__(lr, l2, l1, weight_decay, schedule)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1 and eps > 0):
            raise ValueError("Adam needs 0 <= beta1, beta2 < 1 and eps > 0")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def _extra(self):
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), default weight_decay 0.01."""

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, l2=0.0, l1=0.0,
                 schedule=None):
        super().__init__(lr, beta1, beta2, eps, l2, l1, weight_decay, schedule)


class RMSprop(Optimizer):
    """RMSprop: s = rho s + (1 - rho) g^2; p -= lr g / (sqrt(s) + eps)."""

    kind = "rmsprop"

    def __init__(self, lr=1e-3, rho=0.9, eps=1e-8, l2=0.0, l1=0.0, weight_decay=0.0, schedule=None):
        super().__init__(lr, l2, l1, weight_decay, schedule)
        if not (0 <= rho < 1 and eps > 0):
            raise ValueError("RMSprop needs 0 <= rho < 1 and eps > 0")
        self.rho, self.eps = float(rho), float(eps)

    def _extra(self):
        return {"rho": self.rho, "eps": self.eps}


_OPTIMIZER_NAMES = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get_optimizer(opt, **kwargs):
    if isinstance(opt, Optimizer):
        if kwargs:
            raise TypeError("pass hyper-parameters to the optimizer object, not beside it")
        return opt
    if isinstance(opt, str) and opt.lower() in _OPTIMIZER_NAMES:
        return _OPTIMIZER_NAMES[opt.lower()](**kwargs)
    raise ValueError(f"unknown optimizer {opt!r}; choose one of {sorted(_OPTIMIZER_NAMES)} or an Optimizer")

"""Learning-rate schedules: configuration records, evaluated by the engine (csrc/optimizers.c
fnn_lr_at, or its oracle twin) at the start of every step. Every schedule's rate is multiplied by
the model's `lr_scale` (1 unless a ReduceLROnPlateau callback, or the Adaptive schedule, lowered
it)."""
from .._engine.codes import SCHEDULES
from ._config import Configurable, Frozen, Integral, Interval, NoneOk, Real, validate


class Schedule(Frozen, Configurable):
    """Base class; see the subclasses. Schedules are immutable once made (see Frozen)."""

    _abstract = True

    name = "constant"

    def engine_fields(self):
        """This schedule's fields of the engine's optimizer record."""
        return {"schedule": SCHEDULES[self.name]}

    def plateau_callback(self):
        """A callback that fit runs with this schedule, or None."""
        return None


class Constant(Schedule):
    """lr"""

    name = "constant"

    def __init__(self):
        self._freeze()


class StepDecay(Schedule):
    """lr * gamma ** (epoch // step_size)"""

    name = "step"
    _parameter_constraints = {"step_size": [Interval(Integral, 1, 2 ** 63 - 1)],
                              "gamma": [Interval(Real, 0, 1, closed="right")]}

    def __init__(self, step_size=10, gamma=0.1):
        validate(self, {"step_size": step_size, "gamma": gamma})
        self._freeze()

    def engine_fields(self):
        return {**super().engine_fields(), "step_size": self.step_size, "gamma": self.gamma}


class ExponentialDecay(Schedule):
    """lr * gamma ** epoch"""

    name = "exponential"
    _parameter_constraints = {"gamma": [Interval(Real, 0, 1, closed="right")]}

    def __init__(self, gamma=0.95):
        validate(self, {"gamma": gamma})
        self._freeze()

    def engine_fields(self):
        return {**super().engine_fields(), "gamma": self.gamma}


class CosineDecay(Schedule):
    """lr_min + (lr - lr_min) (1 + cos(pi t / T)) / 2 per optimizer step t; T defaults to the
    number of steps of the fit (epochs x batches per epoch)."""

    name = "cosine"
    _parameter_constraints = {"lr_min": [Interval(Real, 0, None)],
                              "total_steps": [NoneOk(), Interval(Integral, 1, 2 ** 63 - 1)]}

    def __init__(self, lr_min=0.0, total_steps=None):
        validate(self, {"lr_min": lr_min, "total_steps": total_steps})
        self._freeze()

    def engine_fields(self, horizon=0):
        return {**super().engine_fields(), "lr_min": self.lr_min,
                "total_steps": self.total_steps or horizon}


class InvScaling(Schedule):
    """scikit-learn's 'invscaling': lr / (samples_seen + 1) ** power_t, updated each epoch."""

    name = "invscaling"
    _parameter_constraints = {"power_t": [Interval(Real, 0, None)]}

    def __init__(self, power_t=0.5):
        validate(self, {"power_t": power_t})
        self._freeze()

    def engine_fields(self):
        return {**super().engine_fields(), "power_t": self.power_t}


class Adaptive(Schedule):
    """scikit-learn's 'adaptive': lr is divided by `factor` each time the training loss fails to
    decrease by at least `tol` for `patience` consecutive epochs. fit runs it as a
    ReduceLROnPlateau callback (monitor='loss', factor=1/factor, min_delta=tol), created once per
    compile so that its state carries over from one fit to the next and into copies."""

    name = "adaptive"
    _parameter_constraints = {"factor": [Interval(Real, 1, None, closed="neither")],
                              "tol": [Interval(Real, 0, None)],
                              "patience": [Interval(Integral, 1, None)]}

    def __init__(self, factor=5.0, tol=1e-4, patience=2):
        validate(self, {"factor": factor, "tol": tol, "patience": patience})
        self._freeze()

    def plateau_callback(self):
        from .callbacks import ReduceLROnPlateau
        return ReduceLROnPlateau(monitor="loss", factor=1.0 / self.factor, patience=self.patience,
                                 min_delta=self.tol, verbose=0)


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

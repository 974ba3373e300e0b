"""Parameters and configs, the way scikit-learn and Keras do them.

Every configurable class of the neural-network API (layers, optimizers, schedules, callbacks)
declares a class-level `_parameter_constraints` table, in the order of its constructor:

    _parameter_constraints = {"rate": [Interval(Real, 0, 1, closed="left")]}

`validate(self, params)` checks each value against its constraints once and returns it converted
(NumPy scalars become Python numbers); every error reads the same way:

    The 'rate' parameter of Dropout must be a float in the range [0, 1). Got '0.5' instead.

`Configurable` gives the classes `get_config()` (every constructor argument, nested objects as
{"class_name", "config"}) and `from_config(config)`, which only ever instantiates registered
fastnn classes by name: rebuilding a config never runs code from the config.
"""
import functools
import inspect
import math
import numbers

import numpy as np

Real, Integral = numbers.Real, numbers.Integral

_REGISTRY = {}  # class name -> class, for from_config / deserialize


class Interval:
    """A number of `kind` (Real or Integral) in [left, right], ends open or closed; None = no
    bound. Booleans are never numbers here; NaN and infinities are never in range."""

    def __init__(self, kind, left, right, closed="both"):
        self.kind, self.left, self.right, self.closed = kind, left, right, closed

    def convert(self, v):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, self.kind):
            return _INVALID
        v = int(v) if self.kind is Integral else float(v)
        lo_ok = self.left is None or (v >= self.left if self.closed in ("left", "both") else v > self.left)
        hi_ok = self.right is None or (v <= self.right if self.closed in ("right", "both") else v < self.right)
        return v if lo_ok and hi_ok and math.isfinite(v) else _INVALID

    def __str__(self):
        kind = "an int" if self.kind is Integral else "a float"
        lb = "[" if self.closed in ("left", "both") and self.left is not None else "("
        rb = "]" if self.closed in ("right", "both") and self.right is not None else ")"
        left = "-inf" if self.left is None else self.left
        right = "inf" if self.right is None else self.right
        return f"{kind} in the range {lb}{left}, {right}{rb}"


class Options:
    """One of a set of strings (case-sensitive); `aliases` map other spellings to a member."""

    def __init__(self, options, aliases=None):
        self.options, self.aliases = tuple(options), dict(aliases or {})

    def convert(self, v):
        if isinstance(v, str) or v is None:
            v = self.aliases.get(v, v)
            if v in self.options:
                return v
        return _INVALID

    def __str__(self):
        return "a str among {" + ", ".join(repr(o) for o in self.options) + "}"


class Boolean:
    def convert(self, v):
        return bool(v) if isinstance(v, (bool, np.bool_)) else _INVALID

    def __str__(self):
        return "an instance of 'bool'"


class NoneOk:
    def convert(self, v):
        return None if v is None else _INVALID

    def __str__(self):
        return "None"


class InstanceOf:
    def __init__(self, cls, convert=None, name=None):
        self.cls, self._convert, self.name = cls, convert, name or cls.__name__

    def convert(self, v):
        if self._convert is not None:
            return self._convert(v)
        return v if isinstance(v, self.cls) else _INVALID

    def __str__(self):
        return self.name if self._convert is not None else f"an instance of {self.name!r}"


class _Invalid:
    pass


_INVALID = _Invalid()


def validate(owner, params):
    """Check `params` (a dict name -> value) against type(owner)._parameter_constraints; set each
    converted value as an attribute of owner."""
    for name, value in checked(type(owner), params).items():
        object.__setattr__(owner, name, value)


def checked(cls, params):
    """`params` converted after checking each against cls._parameter_constraints."""
    out = {}
    for name, value in params.items():
        constraints = cls._parameter_constraints[name]
        for c in constraints:
            v = c.convert(value)
            if v is not _INVALID:
                out[name] = v
                break
        else:
            kinds = [str(c) for c in constraints]
            must = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " or " + kinds[-1]
            owner = cls.__dict__.get("config_name", cls.__name__)
            raise ValueError(f"The {name!r} parameter of {owner} must be {must}. "
                             f"Got {value!r} instead.")
    return out


class Configurable:
    """get_config / from_config for classes whose constructor arguments are their config."""

    _parameter_constraints = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if not cls.__dict__.get("_abstract", False):  # base classes cannot be rebuilt from configs
            _REGISTRY[cls.__name__] = cls

    @classmethod
    def _param_names(cls):
        return list(_init_params(cls.__init__))

    def get_config(self):
        """Every constructor argument, by name (nested fastnn objects as {"class_name", "config"})."""
        return {name: serialize(getattr(self, name)) for name in self._param_names()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        unknown = set(config) - set(cls._param_names())
        if unknown:
            raise ValueError(f"{cls.__name__} config has unknown keys {sorted(unknown)}")
        return cls(**{k: deserialize(v) for k, v in config.items()})

    def __repr__(self):
        sig = inspect.signature(type(self).__init__)
        args = []
        for name in self._param_names():
            v = getattr(self, name)
            default = sig.parameters[name].default
            if default is inspect.Parameter.empty or not _same(v, default):
                args.append(f"{name}={v!r}")
        return f"{type(self).__name__}({', '.join(args)})"


class Frozen:
    """A configuration record that cannot change once constructed: an engine record made from
    it, or buffers sized for it, can never disagree with it. Make a changed copy instead:
    type(obj).from_config({**obj.get_config(), "lr": 0.1})."""

    def _freeze(self):
        object.__setattr__(self, "_frozen", True)

    def __setattr__(self, name, value):
        if self.__dict__.get("_frozen"):
            raise AttributeError(
                f"{type(self).__name__} cannot change once made (its {name!r} would disagree with "
                f"what was built from it): make a new one, e.g. "
                f"{type(self).__name__}.from_config({{**obj.get_config(), {name!r}: ...}})")
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        if self.__dict__.get("_frozen"):
            raise AttributeError(f"{type(self).__name__} cannot change once made: its {name!r} cannot "
                                 f"be deleted")
        object.__delattr__(self, name)

    def __setstate__(self, state):  # a pickle cannot smuggle in values the constructor refuses
        if self.__dict__.get("_frozen"):  # pickle calls it on a new, empty object only
            raise AttributeError(f"{type(self).__name__} cannot change once made: __setstate__ restores "
                                 f"a pickled one into a new, empty object; make a new one with "
                                 f"{type(self).__name__}.from_config(config)")
        cls = type(self)
        if not isinstance(state, dict):
            raise TypeError(f"cannot restore a {cls.__name__} from {type(state).__name__}")
        # an entry named as a class attribute would shadow it: a method (an Adaptive schedule's
        # 'plateau_callback' entry was called by fit), a property, the kind: refused; the
        # parameters and a subclass's own data are kept
        own = set(cls._parameter_constraints) | set(cls._param_names())
        shadowing = sorted(repr(k) for k in state if not isinstance(k, str) or k.startswith("__") or
                           (k not in own and hasattr(cls, k)))
        if shadowing:
            raise ValueError(f"a pickled {cls.__name__} has fields named as its class's attributes: "
                             f"{', '.join(shadowing)}")
        params = {k: state[k] for k in cls._parameter_constraints if k in state}
        self.__dict__.update({**state, **checked(cls, params)})
        missing = [k for k in cls._param_names() if not hasattr(self, k)]
        if missing:
            raise ValueError(f"a pickled {cls.__name__} lacks {missing}")
        self._restored()
        object.__setattr__(self, "_frozen", True)

    def _restored(self):
        """After __setstate__: what the constructor derives from the parameters, derived again, and,
        for fastnn's own classes, its checks across parameters (nesterov without momentum)."""
        cls = type(self)
        if cls.__module__.startswith("fastnn."):
            try:
                cls.from_config(self.get_config())
            except (TypeError, ValueError) as exc:
                raise ValueError(f"cannot restore a pickled {cls.__name__}: {exc}") from None


@functools.lru_cache(maxsize=None)
def _init_params(init):
    """The constructor's argument names (inspect.signature is slow; configs ask often)."""
    return tuple(p for p in inspect.signature(init).parameters if p != "self")


def _same(a, b):
    try:
        return bool(a == b) and type(a) is type(b) or (a is None and b is None)
    except Exception:
        return False


def serialize(v):
    if isinstance(v, Configurable):
        return {"class_name": type(v).__name__, "config": v.get_config()}
    if isinstance(v, (list, tuple)):
        return [serialize(x) for x in v]
    return v


def deserialize(v):
    """Inverse of serialize: a {"class_name", "config"} dict naming a registered fastnn class
    becomes an instance; anything else is returned as it is."""
    if isinstance(v, dict) and set(v) == {"class_name", "config"} and isinstance(v["class_name"], str):
        cls = _REGISTRY.get(v["class_name"]) if isinstance(v["class_name"], str) else None
        if cls is None:
            raise ValueError(f"unknown fastnn class {v['class_name']!r} in config")
        if not isinstance(v["config"], dict):
            raise ValueError(f"the config of {v['class_name']} must be a dict")
        return cls.from_config(v["config"])
    if isinstance(v, list):
        return [deserialize(x) for x in v]
    return v

"""Layers of a fastnn network. A layer is a description plus, once its model is built, NumPy views
of its arrays in the model's flat buffers (``kernel``, ``bias``, ``gamma``, ``beta``,
``running_mean``, ``running_var``): writing to them changes the model.

A layer class answers everything the model needs to know about its kind, through these hooks
(the model loops over layers and asks, it never tests a layer's class):

  output_width(n_in)            width of the layer's output
  parameters(n_in, n_out)       [(name, shape, decayed)] trained arrays; decayed ones get l2/l1/decay
  statistics(n_in, n_out)       [(name, shape)] running statistics (the model's state buffer)
  engine_fields(offsets)        the fields of the engine's layer record (csrc/fastnn.h fnn_layer)
  initialize(arrays, rng, act)  initial values, act being the activation that follows
  check_arrays(arrays)          reject values the layer cannot hold (set_weights)
  activation                    the activation it applies, or None when it applies none
  starts_linear_map             True for a layer that mixes features (Dense)
  needs_batch_statistics        True when a training batch needs at least 2 rows (BatchNorm)

Adding a layer kind means a class here, its C kernel, its oracle twin and a test.

A layer belongs to one model: adding a layer that is already in a model (this one or another)
raises. Copy it with copy.deepcopy, or make a new one from layer.get_config().
"""
import numpy as np

from .._engine import activations as _act
from .._engine.codes import LAYERS
from ._config import Configurable, Integral, Interval, Options, Real, checked, validate

INITIALIZERS = ("auto", "he_normal", "he_uniform", "glorot_normal", "glorot_uniform",
                "xavier_normal", "xavier_uniform")
_ACTIVATION = Options(tuple(_act.ACTIVATIONS), {k: v for k, v in _act.ALIASES.items() if k != v})


class Layer(Configurable):
    """Base class. `n_in` / `n_out` are set when the model is built."""

    _abstract = True

    kind = None
    activation = None
    starts_linear_map = False
    needs_batch_statistics = False

    def __init__(self):
        self.n_in = self.n_out = None
        self._owner = None  # the model this layer belongs to (set by Sequential.add)

    # -- hooks (defaults: a parameter-free layer that keeps its width) ---------------------------
    def output_width(self, n_in):
        return n_in

    def parameters(self, n_in, n_out):
        return []

    def statistics(self, n_in, n_out):
        return []

    def engine_fields(self, offsets):
        return {"kind": LAYERS[self.kind]}

    def initialize(self, arrays, rng, next_activation):
        pass

    def check_arrays(self, arrays):
        pass

    def array_names(self):
        """Names of the arrays get_weights returns for this layer, in order."""
        return [p[0] for p in self.parameters(1, 1)] + [s[0] for s in self.statistics(1, 1)]

    # -- binding and copying ---------------------------------------------------------------------
    def _bind(self, n_in, n_out, arrays):
        object.__setattr__(self, "n_in", n_in)
        object.__setattr__(self, "n_out", n_out)
        for name, view in arrays.items():
            object.__setattr__(self, name, view)

    def __setattr__(self, name, value):
        # a built layer's configuration and arrays are the model's layout: they cannot change;
        # before that, a new value is checked as the constructor checks it
        config = name in type(self)._parameter_constraints
        if self.__dict__.get("n_in") is not None and (config or name in self.array_names()
                                                      or name in ("n_in", "n_out")):
            hint = (f"assign into it instead: layer.{name}[...] = values" if name in self.array_names()
                    else "make a new layer (type(layer).from_config({**layer.get_config(), ...})) and a new model")
            raise AttributeError(f"{type(self).__name__}.{name} cannot change once its model is built; {hint}")
        if config:
            value = checked(type(self), {name: value})[name]
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        # a parameter, a size or a built layer's array deleted would leave get_config, files and
        # the engine disagreeing (a saved file rebuilt the layer without its activation)
        built = self.__dict__.get("n_in") is not None
        if (name in type(self)._parameter_constraints or name in ("n_in", "n_out")
                or (built and name in self.array_names())):
            hint = "its model is built" if built else "set a new value instead"
            raise AttributeError(f"{type(self).__name__}.{name} cannot be deleted: {hint}")
        object.__delattr__(self, name)

    def __getstate__(self):
        # the views and the owner belong to the model; Sequential.__setstate__ binds them again
        state = dict(self.__dict__)
        state["_owner"] = None
        state["n_in"] = state["n_out"] = None
        for name in self.array_names():
            state[name] = None
        return state

    def __copy__(self):
        return type(self).from_config(self.get_config())  # a fresh, unbound layer

    def __deepcopy__(self, memo):
        # a deep copy of a layer on its own is a fresh, unbound layer with the same config; a
        # model's deep copy goes through Sequential.__getstate__, which rebinds its copies
        owner = self._owner() if self._owner is not None else None
        if owner is not None and id(owner) in memo:
            new = type(self).__new__(type(self))
            memo[id(self)] = new
            new.__dict__.update(self.__getstate__())
            return new
        new = type(self).from_config(self.get_config())
        memo[id(self)] = new
        return new

    def __setstate__(self, state):
        if self.__dict__:  # pickle calls it on a new, empty object only
            raise RuntimeError(f"__setstate__ restores a pickled layer into a new, empty object; this "
                               f"{type(self).__name__} is already set up (and may belong to a built "
                               f"model): make a new layer with type(layer).from_config(config)")
        if not isinstance(state, dict):
            raise TypeError(f"cannot restore a {type(self).__name__} from {type(state).__name__}")
        params = {k: state[k] for k in type(self)._parameter_constraints if k in state}
        state = {**state, **checked(type(self), params)}  # a pickle cannot smuggle in bad values
        self.__dict__.update(state)


class Dense(Layer):
    """A fully connected layer of `units` neurons: y = activation(x @ kernel + bias).

    kernel has shape (n_in, units), bias (units,). kernel_initializer: 'auto' (He for the ReLU
    family, Glorot otherwise), 'he_normal', 'he_uniform', 'glorot_normal', 'glorot_uniform'.
    alpha is the slope of leaky_relu for negative inputs."""

    kind = "dense"
    starts_linear_map = True
    _parameter_constraints = {
        "units": [Interval(Integral, 1, None)],
        "activation": [_ACTIVATION],
        "kernel_initializer": [Options(INITIALIZERS)],
        "alpha": [Interval(Real, 0, None)],
    }

    def __init__(self, units, activation=None, kernel_initializer="auto", alpha=0.01):
        super().__init__()
        validate(self, {"units": units, "activation": activation,
                        "kernel_initializer": kernel_initializer, "alpha": alpha})
        self.kernel = self.bias = None

    def output_width(self, n_in):
        return self.units

    def parameters(self, n_in, n_out):
        return [("kernel", (n_in, n_out), True), ("bias", (n_out,), False)]

    def engine_fields(self, offsets):
        return {"kind": LAYERS["dense"], "w_off": offsets["kernel"], "b_off": offsets["bias"],
                "alpha": self.alpha}

    def initialize(self, arrays, rng, next_activation):
        kind = self.kernel_initializer
        if kind == "auto":
            kind = "he_normal" if _act.get(next_activation).init == "he" else "glorot_uniform"
        n_in, n_out = arrays["kernel"].shape
        arrays["kernel"][...] = initialize(kind, n_in, n_out, (n_in, n_out), rng, arrays["kernel"].dtype)
        arrays["bias"][...] = 0


class Activation(Layer):
    """An activation on its own, e.g. after BatchNorm: 'relu', 'leaky_relu', 'sigmoid', 'tanh',
    'softmax', 'identity'."""

    kind = "activation"
    _parameter_constraints = {"activation": [_ACTIVATION], "alpha": [Interval(Real, 0, None)]}

    def __init__(self, activation, alpha=0.01):
        super().__init__()
        validate(self, {"activation": activation, "alpha": alpha})

    def engine_fields(self, offsets):
        return {"kind": LAYERS["activation"], "alpha": self.alpha}


class Dropout(Layer):
    """Inverted dropout: during training each unit is zeroed with probability `rate` and the
    survivors are scaled by 1 / (1 - rate); at inference it is the identity."""

    kind = "dropout"
    _parameter_constraints = {"rate": [Interval(Real, 0, 1, closed="left")]}

    def __init__(self, rate):
        super().__init__()
        validate(self, {"rate": rate})

    def engine_fields(self, offsets):
        return {"kind": LAYERS["dropout"], "rate": self.rate}


class BatchNorm(Layer):
    """Batch normalisation of each feature, with learned scale `gamma` and shift `beta`.

    Training uses the batch's statistics and updates the running ones
    (running = (1 - momentum) running + momentum batch, unbiased variance); inference uses the
    running statistics. Defaults follow PyTorch (momentum 0.1, eps 1e-5). A training batch of one
    row has no variance: it normalises to beta, passes no gradient back through the layer and
    leaves the running statistics unchanged (the last batch of an epoch of n = k batch_size + 1
    rows; PyTorch refuses it, Keras pulls the running variance toward 0). A fit whose every batch
    would hold one row (batch_size 1, or a single sample) is refused before it starts."""

    kind = "batchnorm"
    needs_batch_statistics = True
    _parameter_constraints = {"momentum": [Interval(Real, 0, 1)],
                              "eps": [Interval(Real, 0, None, closed="neither")]}

    def __init__(self, momentum=0.1, eps=1e-5):
        super().__init__()
        validate(self, {"momentum": momentum, "eps": eps})
        self.gamma = self.beta = self.running_mean = self.running_var = None

    def parameters(self, n_in, n_out):
        return [("gamma", (n_out,), False), ("beta", (n_out,), False)]

    def statistics(self, n_in, n_out):
        return [("running_mean", (n_out,)), ("running_var", (n_out,))]

    def engine_fields(self, offsets):
        return {"kind": LAYERS["batchnorm"], "w_off": offsets["gamma"], "b_off": offsets["beta"],
                "s_off": offsets["running_mean"], "momentum": self.momentum, "eps": self.eps}

    def initialize(self, arrays, rng, next_activation):
        arrays["gamma"][...] = 1
        arrays["beta"][...] = 0
        arrays["running_mean"][...] = 0
        arrays["running_var"][...] = 1

    def check_arrays(self, arrays):
        if "running_var" in arrays and (np.asarray(arrays["running_var"]) < 0).any():
            raise ValueError("BatchNorm.running_var must be >= 0 (it is a variance)")


BatchNormalization = BatchNorm


def initialize(kind, fan_in, fan_out, shape, rng, dtype):
    """He (relu family) or Glorot/Xavier (sigmoid, tanh, linear) weights, normal or uniform."""
    if kind.startswith("xavier"):
        kind = "glorot" + kind[len("xavier"):]
    if kind == "he_normal":
        w = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    elif kind == "he_uniform":
        lim = np.sqrt(6.0 / fan_in)
        w = rng.uniform(-lim, lim, shape)
    elif kind == "glorot_normal":
        w = rng.standard_normal(shape) * np.sqrt(2.0 / (fan_in + fan_out))
    elif kind == "glorot_uniform":
        lim = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-lim, lim, shape)
    else:
        raise ValueError(f"unknown initializer {kind!r}")
    return w.astype(dtype)

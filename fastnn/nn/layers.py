"""Layers of a fastnn network: descriptions only. The numbers live in the model's flat parameter
buffer; after the model is built, a layer's arrays (``kernel``, ``bias``, ``gamma``, ``beta``,
``running_mean``, ``running_var``) are NumPy views into it, so writing to them changes the model.
"""
import numpy as np

from .._engine.codes import ACTIVATION_ALIASES, ACTIVATIONS, LAYERS

INITIALIZERS = ("auto", "he_normal", "he_uniform", "glorot_normal", "glorot_uniform",
                "xavier_normal", "xavier_uniform")


def activation_code(name):
    """Code of an activation given by name ('relu', 'tanh', 'logistic', None...)."""
    key = ACTIVATION_ALIASES.get(name, name)
    if key not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[key]


class Layer:
    """Base class. `n_in` / `n_out` are set when the model is built."""

    kind = None
    n_in = n_out = None

    def _bind(self, params, state):  # called by the model once the buffers exist
        pass

    def _param_shapes(self):
        """[(name, shape, decayed)] of this layer's parameters, in buffer order per group."""
        return []

    def _state_size(self):
        return 0

    def _spec(self):
        return {"kind": LAYERS[self.kind], "activation": 0, "n_in": self.n_in, "n_out": self.n_out,
                "w_off": 0, "b_off": 0, "s_off": 0, "alpha": 0.0, "rate": 0.0, "momentum": 0.0,
                "eps": 0.0}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({args})"

    def _config(self):
        return {}


class Dense(Layer):
    """A fully connected layer of `units` neurons: y = activation(x @ kernel + bias).

    kernel has shape (n_in, units), bias (units,). kernel_initializer: 'auto' (He for the relu
    family, Glorot otherwise), 'he_normal', 'he_uniform', 'glorot_normal', 'glorot_uniform'."""

    kind = "dense"

    def __init__(self, units, activation=None, kernel_initializer="auto", alpha=0.01):
        if int(units) != units or units < 1:
            raise ValueError(f"Dense units must be a positive integer, not {units!r}")
        if kernel_initializer not in INITIALIZERS:
            raise ValueError(f"unknown kernel_initializer {kernel_initializer!r}; choose one of {INITIALIZERS}")
        self.units = int(units)
        self.activation = ACTIVATION_ALIASES.get(activation, activation)
        activation_code(self.activation)
        self.kernel_initializer = kernel_initializer
        self.alpha = float(alpha)
        self.kernel = self.bias = None

    def _config(self):
        return {"units": self.units, "activation": self.activation}

    def _param_shapes(self):
        return [("kernel", (self.n_in, self.n_out), True), ("bias", (self.n_out,), False)]


class Activation(Layer):
    """An activation on its own, e.g. after BatchNorm: 'relu', 'leaky_relu', 'sigmoid', 'tanh',
    'softmax', 'identity'."""

    kind = "activation"

    def __init__(self, activation, alpha=0.01):
        self.activation = ACTIVATION_ALIASES.get(activation, activation)
        activation_code(self.activation)
        self.alpha = float(alpha)

    def _config(self):
        return {"activation": self.activation}


class Dropout(Layer):
    """Inverted dropout: during training each unit is zeroed with probability `rate` and the
    survivors are scaled by 1 / (1 - rate); at inference it is the identity."""

    kind = "dropout"

    def __init__(self, rate):
        if not 0 <= rate < 1:
            raise ValueError(f"Dropout rate must be in [0, 1), not {rate!r}")
        self.rate = float(rate)

    def _config(self):
        return {"rate": self.rate}


class BatchNorm(Layer):
    """Batch normalisation of each feature, with learned scale `gamma` and shift `beta`.

    Training uses the batch's statistics and updates the running ones
    (running = (1 - momentum) running + momentum batch, unbiased variance); inference uses the
    running statistics. Defaults follow PyTorch (momentum 0.1, eps 1e-5)."""

    kind = "batchnorm"

    def __init__(self, momentum=0.1, eps=1e-5):
        if not 0 <= momentum <= 1:
            raise ValueError(f"BatchNorm momentum must be in [0, 1], not {momentum!r}")
        if not eps > 0:
            raise ValueError(f"BatchNorm eps must be positive, not {eps!r}")
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.gamma = self.beta = self.running_mean = self.running_var = None

    def _config(self):
        return {"momentum": self.momentum, "eps": self.eps}

    def _param_shapes(self):
        return [("gamma", (self.n_out,), False), ("beta", (self.n_out,), False)]

    def _state_size(self):
        return 2 * self.n_out


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

"""The losses: one record each, holding everything that depends on which loss a model uses: its
public name and aliases, the engine's code (csrc/fastnn.h fnn_loss), the output link fused into
it, the kind of targets it takes, and the rules that turn raw outputs z into predictions and into
an accuracy. The model, fastnn.ops, the oracle and the estimators all read these records.

Decision rules (the C engine's count_correct follows the same ones):
  cross_entropy        predict argmax_j z_j (ties: the first); correct when it equals the label
  binary_crossentropy  predict z > 0, i.e. sigmoid(z) > 0.5 (scikit-learn's threshold); correct
                       per output when it equals (target >= 0.5)
  mse                  predict z; no accuracy

SKLEARN holds scikit-learn's MLP losses (sklearn/neural_network/_base.py, 1.9), named
'sklearn_' + scikit-learn's name: their values are computed as scikit-learn computes them
(probabilities clipped, sums over outputs, 0.5 mean for the squared error) and their gradients as
its backprop does, (link(z) - y) w / sum w. Their decision rules are those of the fastnn loss
with the same link. fastnn's scikit-learn estimators compile their models with these.
"""
from dataclasses import dataclass

import numpy as np

from .codes import LOSSES as _FASTNN_CODES, SK_LOSSES as _SK_CODES

_CODES = {**_FASTNN_CODES, **_SK_CODES}


@dataclass(frozen=True)
class LossRecord:
    name: str        # canonical public name
    engine: str      # key of codes.LOSSES
    aliases: tuple
    link: str        # activation applied to the raw outputs to give predictions / probabilities
    targets: str     # "labels" (int class indices), "probabilities" ([0, 1]) or "real"
    min_outputs: int

    @property
    def code(self):
        return _CODES[self.engine]

    @property
    def is_classifier(self):
        return self.targets != "real"

    def predict(self, z):
        """Predictions from raw outputs z (n, k); a regression loss's values are its link of z
        (exp for poisson), computed in place."""
        if self.targets == "labels":
            return z.argmax(axis=1)
        if self.targets == "probabilities":
            return (z > 0).astype(np.int64)
        if self.link == "exp":
            np.exp(z, out=z)
        return z

    def correct(self, z, T, labels):
        """Hits counted the way the engine counts them (see the module docstring)."""
        if self.targets == "labels":
            return int((z.argmax(axis=1) == labels).sum())
        if self.targets == "probabilities":
            return int(((z > 0) == (T >= 0.5)).sum())
        return 0

    def accuracy_denominator(self, n_samples, n_outputs):
        return n_samples * (n_outputs if self.targets == "probabilities" else 1)


LOSSES = {r.name: r for r in (
    LossRecord("cross_entropy", "softmax_xent",
               ("categorical_crossentropy", "sparse_categorical_crossentropy", "softmax_xent",
                "log_loss"), "softmax", "labels", 2),
    LossRecord("binary_crossentropy", "sigmoid_bce", ("bce", "sigmoid_bce"), "sigmoid",
               "probabilities", 1),
    LossRecord("mse", "mse", ("mean_squared_error", "squared_error"), "identity", "real", 1),
)}
SKLEARN = {r.name: r for r in (
    LossRecord("sklearn_log_loss", "sk_log_loss", (), "softmax", "labels", 2),
    LossRecord("sklearn_binary_log_loss", "sk_binary_log_loss", (), "sigmoid", "probabilities", 1),
    LossRecord("sklearn_squared_error", "sk_squared_error", (), "identity", "real", 1),
    LossRecord("sklearn_poisson", "sk_poisson", (), "exp", "real", 1),
)}
ALIASES = {a: r.name for r in (*LOSSES.values(), *SKLEARN.values()) for a in (r.name,) + r.aliases}
BY_CODE = {r.code: r for r in (*LOSSES.values(), *SKLEARN.values())}


def get(name):
    """The record of a loss given by name or alias."""
    try:
        name = ALIASES[name]
        return LOSSES[name] if name in LOSSES else SKLEARN[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(ALIASES)}") from None


def for_link(activation):
    """The loss inferred from a last activation: softmax -> cross entropy, sigmoid -> binary
    cross entropy, anything else -> mse."""
    return {"softmax": LOSSES["cross_entropy"], "sigmoid": LOSSES["binary_crossentropy"]}.get(
        activation, LOSSES["mse"])

"""The activations: one record each, used by the layers, fastnn.ops, the oracle and the
estimators. `code` is the engine's (csrc/fastnn.h fnn_activation); `init` is the weight
initialisation family that suits it ("he" for the ReLU family, "glorot" otherwise)."""
from dataclasses import dataclass

from .codes import ACTIVATIONS as _CODES


@dataclass(frozen=True)
class ActivationRecord:
    name: str
    aliases: tuple
    init: str

    @property
    def code(self):
        return _CODES[self.name]


ACTIVATIONS = {r.name: r for r in (
    ActivationRecord("identity", ("linear", None), "glorot"),
    ActivationRecord("relu", (), "he"),
    ActivationRecord("leaky_relu", (), "he"),
    ActivationRecord("sigmoid", ("logistic",), "glorot"),
    ActivationRecord("tanh", (), "glorot"),
    ActivationRecord("softmax", (), "glorot"),
)}
ALIASES = {a: r.name for r in ACTIVATIONS.values() for a in (r.name,) + r.aliases}


def get(name):
    """The record of an activation given by name or alias ('relu', 'logistic', None...)."""
    try:
        return ACTIVATIONS[ALIASES[name]]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {name!r}; choose one of "
                         f"{sorted(k for k in ALIASES if k is not None)}") from None

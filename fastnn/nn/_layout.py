"""The layout of a built model: where each layer's arrays live in the flat buffers, and the
engine's description of the network. A Plan is immutable: building or compiling a model makes a
new one, and an engine (with its workspace) is made from one plan and never sees another.

    params = [every decayed weight | biases, batch-norm gamma and beta]   (weights first, so
             penalties apply to the prefix params[0:n_decay])
    state  = [running statistics]
"""
import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .._engine import activations as _act, records as _records


@dataclass(frozen=True)
class Plan:
    n_inputs: int
    n_outputs: int
    n_params: int
    n_decay: int
    n_state: int
    widths: tuple       # (n_in, n_out) per layer
    arrays: tuple       # per layer: ((name, "params" | "state", offset, shape), ...)
    fields: tuple       # per layer: the engine record's fields (a tuple of (key, value) pairs)
    activations: tuple  # per layer: the activation it applies (None: none), before fusion
    loss: object        # the LossRecord
    seed: int

    @property
    def loss_code(self):
        return self.loss.code

    def views(self, params, state):
        """Per layer, {name: view} into the given buffers."""
        bufs = {"params": params, "state": state}
        return [{name: bufs[buf][off:off + int(np.prod(shape))].reshape(shape)
                 for name, buf, off, shape in arrs} for arrs in self.arrays]

    def with_loss(self, loss):
        """The same layout for another loss: only the engine's activations change (the loss fuses
        the output link)."""
        acts = engine_activations(self.activations, loss)
        fields = tuple(tuple((k, (_act.get(a).code if a is not None else 0) if k == "activation" else v)
                             for k, v in f) for f, a in zip(self.fields, acts))
        return dataclasses.replace(self, fields=fields, loss=loss)

    def engine(self, backend, dtype, batch):
        """A new engine (with its workspace for `batch` rows) running this plan."""
        return backend.Engine(self.layer_records(), self.net_record(), dtype, batch)

    def layer_records(self):
        """The engine's LAYER records (fastnn/_engine/records.py)."""
        return _records.layer_records([dict(f) for f in self.fields])

    def net_record(self):
        return _records.net_record(loss=self.loss.code, n_inputs=self.n_inputs,
                                   n_outputs=self.n_outputs, n_params=self.n_params,
                                   n_decay=self.n_decay, n_state=self.n_state, seed=self.seed)

    def check_buffers(self, params, slots, state, n_slots):
        """Refuse buffers that do not match this plan (the engine trusts their sizes)."""
        if (params.shape != (self.n_params,) or slots.shape != (n_slots * self.n_params,)
                or state.shape != (max(self.n_state, 1),)):
            raise ValueError(f"the model's buffers ({params.shape}, {slots.shape}, {state.shape}) do "
                             f"not match its layout ({self.n_params} parameters x {n_slots} slots, "
                             f"{self.n_state} statistics)")


def engine_activations(activations, loss):
    """Each layer's activation as the engine runs it: the last layer's activation is dropped
    (identity) when the loss fuses it (softmax under cross entropy, sigmoid under binary cross
    entropy). Only the last layer's: a link followed by any other layer (batch norm, dropout) is
    part of the network, computed as declared."""
    acts = list(activations)
    if acts and acts[-1] == loss.link and loss.link != "identity":
        acts[-1] = "identity"
    return acts


def following_activation(layers, i):
    """The activation applied to layer i's output before the next linear map: its own, else the
    first non-identity one among the layers up to the next layer that starts a linear map."""
    if layers[i].activation not in (None, "identity"):
        return layers[i].activation
    for ly in layers[i + 1:]:
        if ly.starts_linear_map:
            break
        if ly.activation not in (None, "identity"):
            return ly.activation
    return "identity"


# What the engine reads for each kind of layer (csrc/network.c): its output width and arrays.
# A layer class whose hooks disagree with its engine kind would make the engine read out of bounds.
_CONTRACT = {
    "dense": lambda n_in, n_out: ({"kernel": (n_in, n_out), "bias": (n_out,)}, {}),
    "activation": lambda n_in, n_out: ({}, {}),
    "dropout": lambda n_in, n_out: ({}, {}),
    "batchnorm": lambda n_in, n_out: ({"gamma": (n_out,), "beta": (n_out,)},
                                      {"running_mean": (n_out,), "running_var": (n_out,)}),
}


def _check_contract(layers, widths):
    for i, (ly, (n_in, n_out)) in enumerate(zip(layers, widths)):
        if ly.kind not in _CONTRACT:
            raise TypeError(f"layer {i} ({type(ly).__name__}) has no engine kind")
        params, stats = _CONTRACT[ly.kind](n_in, n_out)
        declared = {name: tuple(shape) for name, shape, _ in ly.parameters(n_in, n_out)}
        declared_stats = {name: tuple(shape) for name, shape in ly.statistics(n_in, n_out)}
        width_ok = isinstance(n_out, int) and n_out >= 1 and (ly.kind == "dense" or n_out == n_in)
        if not width_ok or declared != params or declared_stats != stats:
            raise TypeError(f"layer {i} ({type(ly).__name__}) declares arrays or widths that its engine "
                            f"kind {ly.kind!r} does not use")


def make_plan(layers, n_inputs, loss, seed):
    widths, width = [], n_inputs
    for ly in layers:
        n_out = ly.output_width(width)
        widths.append((width, n_out))
        width = n_out
    n_outputs = width
    _check_contract(layers, widths)
    decayed, other, stats = [], [], []
    for i, (ly, (n_in, n_out)) in enumerate(zip(layers, widths)):
        for name, shape, dec in ly.parameters(n_in, n_out):
            (decayed if dec else other).append((i, name, tuple(shape)))
        for name, shape in ly.statistics(n_in, n_out):
            stats.append((i, name, tuple(shape)))
    per_layer = [[] for _ in layers]
    offsets = [{} for _ in layers]
    off = 0
    for group in (decayed, other):
        for i, name, shape in group:
            per_layer[i].append((name, "params", off, shape))
            offsets[i][name] = off
            off += math.prod(shape)  # Python ints: a huge layer's count cannot wrap as np.prod's does
    n_params, n_decay = off, sum(math.prod(s) for _, _, s in decayed)
    off = 0
    for i, name, shape in stats:
        per_layer[i].append((name, "state", off, shape))
        offsets[i][name] = off
        off += math.prod(shape)
    n_state = off
    activations = tuple(ly.activation for ly in layers)
    acts = engine_activations(activations, loss)
    fields = []
    for ly, (n_in, n_out), offs, act in zip(layers, widths, offsets, acts):
        f = dict(ly.engine_fields(offs))
        f.update(n_in=n_in, n_out=n_out, activation=_act.get(act).code if act is not None else 0)
        fields.append(tuple(f.items()))
    # the engine's arrays are at least one element long
    return Plan(n_inputs, n_outputs, n_params, n_decay, n_state, tuple(widths),
                tuple(tuple(a) for a in per_layer), tuple(fields), activations, loss, seed)

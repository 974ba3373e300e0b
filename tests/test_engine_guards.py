"""The compiled engine refuses descriptions and buffers that would make it read or write out of
bounds (the hostile tester's engine-level crashes), with a Python exception. The cases run in a
child process, so a regression shows up as a failed test rather than a dead test run."""
import os
import subprocess
import sys
import tempfile

import pytest

import fastnn

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))

CHILD = r'''
import numpy as np
from fastnn._engine import _ext, records as R

def net(**kw):
    f = dict(loss=0, n_inputs=4, n_outputs=3, n_params=4 * 3 + 3, n_decay=12, n_state=0, seed=0)
    f.update(kw)
    return R.net_record(**f)

def layers(**kw):
    f = dict(kind=0, n_in=4, n_out=3, w_off=0, b_off=12)
    f.update(kw)
    return R.layer_records([f])

BN = [dict(kind=0, n_in=4, n_out=3, w_off=0, b_off=12), dict(kind=3, n_in=3, n_out=3, w_off=15, b_off=18,
      s_off=0, momentum=0.1, eps=1e-5)]

def engine(ls=None, nt=None):
    return _ext.Engine(layers() if ls is None else ls, net() if nt is None else nt, "float64", 8)

X = np.ones((8, 4)); y = np.zeros(8, np.int64)
P, S, ST, C = np.zeros(15), np.zeros(15), np.zeros(1), np.zeros(2, np.int64)
opt = R.optim_record(kind=0, lr=0.1)
cases = {
    "w_off past params": lambda: engine(layers(w_off=10 ** 9)),
    "negative w_off": lambda: engine(layers(w_off=-100)),
    "b_off past params": lambda: engine(layers(b_off=14)),
    "s_off past state": lambda: engine(R.layer_records([BN[0], dict(BN[1], s_off=10 ** 8)]),
                                       net(n_params=21, n_state=6)),
    "n_in disagrees with n_inputs": lambda: engine(layers(n_in=5)),
    "n_out disagrees with n_outputs": lambda: engine(nt=net(n_outputs=2)),
    "unknown loss": lambda: engine(nt=net(loss=9)),
    "unknown layer kind": lambda: engine(layers(kind=7)),
    "unknown activation": lambda: engine(layers(activation=42)),
    "n_decay past n_params": lambda: engine(nt=net(n_decay=99)),
    "params too short": lambda: engine().train_epoch(R.result_record(), np.zeros(3), S, ST, C, np.zeros(8, np.int64), opt, X, None, y, None, 4, 1, 0),
    "slots too short": lambda: engine().train_epoch(R.result_record(), P, np.zeros(3), ST, C, np.zeros(8, np.int64), opt, X, None, y, None, 4, 1, 0),
    "adam slots too short": lambda: engine().train_step(R.result_record(), P, S, ST, C, R.optim_record(kind=1, lr=0.1), X, None, y, None, 0),
    "state empty": lambda: engine().train_step(R.result_record(), P, S, np.zeros(0), C, opt, X, None, y, None, 0),
    "perm too short": lambda: engine().train_epoch(R.result_record(), P, S, ST, C, np.zeros(3, np.int64), opt, X, None, y, None, 4, 1, 0),
    "X too narrow": lambda: engine().train_step(R.result_record(), P, S, ST, C, opt, np.ones((8, 2)), None, y, None, 0),
    "labels too short": lambda: engine().train_step(R.result_record(), P, S, ST, C, opt, X, None, y[:3], None, 0),
    "sw too short": lambda: engine().train_step(R.result_record(), P, S, ST, C, opt, X, None, y, np.ones(2), 0),
    "predict out too small": lambda: engine().predict(np.zeros((2, 3)), P, ST, X),
    "predict out too narrow": lambda: engine().predict(np.zeros((8, 1)), P, ST, X),
    "predict params too short": lambda: engine().predict(np.zeros((8, 3)), np.zeros(2), ST, X),
    "gradient grads too short": lambda: engine().gradient(np.zeros(2), P, X, None, y, None, 0),
    "batch whose workspace cannot be addressed": lambda: _ext.Engine(layers(), net(), "float64", 2 ** 60),
    "params None": lambda: engine().train_step(R.result_record(), None, S, ST, C, opt, X, None, y, None, 0),
    "predict out None": lambda: engine().predict(None, P, ST, X),
}
Z = np.ones
kernels = {
    "activation_forward Y small": lambda: _ext.activation_forward(1, np.zeros((1, 1)), Z((200, 200))),
    "activation_backward dY small": lambda: _ext.activation_backward(1, np.zeros((200, 200)), Z((1, 1)), Z((200, 200))),
    "gemm B too short": lambda: _ext.gemm(np.zeros((400, 400)), Z((400, 400)), Z((1, 400))),
    "gemm A too short": lambda: _ext.gemm(np.zeros((400, 400)), Z((1, 400)), Z((400, 400))),
    "gemm_naive B too short": lambda: _ext.gemm_naive(np.zeros((50, 50)), Z((50, 50)), Z((1, 50))),
    "bias_forward b short": lambda: _ext.bias_forward(np.zeros((2, 1000)), Z(1)),
    "bias_backward db short": lambda: _ext.bias_backward(np.zeros(1), Z((200, 200))),
    "dropout_forward mask small": lambda: _ext.dropout_forward(np.zeros((200, 200)), np.zeros((1, 1)), Z((200, 200)), .5, 1),
    "dropout_backward mask small": lambda: _ext.dropout_backward(np.zeros((200, 200)), Z((200, 200)), np.zeros((1, 1))),
    "batchnorm_forward Y small": lambda: _ext.batchnorm_forward(np.zeros((1, 1)), np.zeros((1, 1)), *[np.zeros(1)] * 3, Z((200, 200)), Z(1), Z(1)),
    "batchnorm_running var short": lambda: _ext.batchnorm_running(np.zeros(1), np.zeros(1), np.zeros(1000), np.zeros(1000), 5),
    "batchnorm_inference gamma short": lambda: _ext.batchnorm_inference(np.zeros((20, 20)), Z((20, 20)), Z(1), Z(20), Z(20), Z(20)),
    "batchnorm_backward gamma short": lambda: _ext.batchnorm_backward(np.zeros((20, 20)), np.zeros(20), np.zeros(20), Z((20, 20)), Z((20, 20)), Z(20), Z(1)),
    "loss_forward T small": lambda: _ext.loss_forward(2, Z((200, 200)), T=Z((1, 1))),
    "loss_forward sw short": lambda: _ext.loss_forward(2, Z((1000, 1)), T=Z((1000, 1)), sw=Z(1)),
    "loss_forward labels short": lambda: _ext.loss_forward(0, Z((1000, 3)), labels=np.zeros(2, np.int64)),
    "loss_backward dZ small": lambda: _ext.loss_backward(2, np.zeros((1, 1)), Z((200, 200)), T=Z((200, 200))),
    "sgd_update g short": lambda: _ext.sgd_update(np.zeros(1000), np.zeros(1000), np.zeros(1), 0, .1),
    "sgd_update vel short with momentum": lambda: _ext.sgd_update(np.zeros(1000), np.zeros(1), np.zeros(1000), 0, .1, momentum=.9),
    "adam_update m short": lambda: _ext.adam_update(np.zeros(1000), np.zeros(1), np.zeros(1000), np.zeros(1000), 0, 1, .1),
    "adam_update form 7": lambda: _ext.adam_update(np.zeros(10), np.zeros(10), np.zeros(10), np.zeros(10), 0, 1, .1, form=7),
    "rmsprop_update s short": lambda: _ext.rmsprop_update(np.zeros(1000), np.zeros(1), np.zeros(1000), 0, .1),
    "rmsprop_update n_decay past p": lambda: _ext.rmsprop_update(np.zeros(10), np.zeros(10), np.zeros(10), 99, .1),
}
cases.update(kernels)
for field, value in [("lr", float("nan")), ("lr", float("inf")), ("momentum", 1.0), ("beta1", 1.0),
                     ("eps", 0.0), ("l2_loss", -1.0), ("lr_scale", float("inf")), ("rho", -0.5)]:
    bad = R.optim_record(**{"kind": 1, "lr": 0.1, field: value})
    cases[f"OPTIM {field}={value}"] = lambda bad=bad: engine().train_step(
        R.result_record(), P, np.zeros(30), ST, C, bad, X, None, y, None, 0)
for name, call in cases.items():
    try:
        call()
    except (ValueError, TypeError, MemoryError):
        print("refused", name)
    else:
        print("ACCEPTED", name)
'''


def test_the_engine_and_its_kernels_refuse_out_of_bounds_descriptions_and_buffers():
    if "c" not in fastnn.available_backends():
        pytest.skip("the compiled backend is not built")
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=PACKAGE_ROOT), cwd=tempfile.gettempdir())
    assert out.returncode == 0, f"exit status {out.returncode} (negative: killed by a signal)\n{out.stdout}\n{out.stderr}"
    lines = out.stdout.split("\n")
    accepted = [ln for ln in lines if ln.startswith("ACCEPTED")]
    assert not accepted, accepted
    assert len([ln for ln in lines if ln.startswith("refused")]) == 56

"""`fastnn --check` (fastnn.__main__.self_check): the compiled kernels against the oracle, one line
per check, quick enough to run before every training session."""
import re
import time

import pytest

import fastnn
from fastnn.__main__ import self_check

# every kernel family of csrc/fastnn_api.h, with the names the check prints
FAMILIES = {
    "gemm, each transpose": ["gemm", "gemm_tA", "gemm_tB", "gemm_tAB"],
    "bias": ["bias", "bias_bwd"],
    "activations forward": ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "softmax"],
    "activations backward": ["identity_bwd", "relu_bwd", "leaky_relu_bwd", "sigmoid_bwd", "tanh_bwd",
                             "softmax_bwd"],
    "losses forward": ["loss_xent", "loss_bce", "loss_mse"],
    "losses backward": ["loss_xent_bwd", "loss_bce_bwd", "loss_mse_bwd"],
    "dropout": ["dropout", "dropout_bwd"],
    "batch norm": ["batchnorm", "batchnorm_run", "batchnorm_inf", "batchnorm_bwd"],
    "optimizers": ["sgd", "sgd_momentum", "sgd_nesterov", "adam", "rmsprop"],
}
LINE = re.compile(r"^  (float32|float64)\s+(\S+)\s+max error (\S+)  (ok|FAIL)$")


@pytest.mark.skipif("c" not in fastnn.available_backends(), reason="compiled extension not built")
def test_self_check_passes_quickly_and_names_every_kernel_family(capsys):
    t0 = time.perf_counter()
    assert self_check() is True
    assert time.perf_counter() - t0 < 1.0
    lines = capsys.readouterr().out.splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed) if not m]
    seen = {(m[1], m[2]) for m in parsed}
    assert len(seen) == len(lines)  # one line per check
    assert all(m[4] == "ok" and float(m[3]) >= 0 for m in parsed)
    for family, names in FAMILIES.items():
        for dtype in ("float32", "float64"):
            missing = [n for n in names if (dtype, n) not in seen]
            assert not missing, f"{family} ({dtype}): no check of {missing}"

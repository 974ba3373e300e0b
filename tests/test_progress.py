"""Progress output of fit: a live bar on a terminal (checked through a pseudo-terminal), one line
per epoch through a pipe or with verbose=2, nothing with verbose=0; and the live progress the
engine publishes while an epoch runs in C."""
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import fastnn

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))

SCRIPT = """
import numpy as np, fastnn
rng = np.random.default_rng(0)
X = rng.standard_normal(({n}, 256)).astype(np.float32)
y = rng.integers(0, 10, {n})
m = fastnn.Sequential([fastnn.Dense(512, activation="relu"), fastnn.Dense(10)], seed=0)
m.compile("sgd", "cross_entropy")
m.fit(X, y, epochs=2, batch_size=8, verbose={verbose})
print("DONE")
"""


def run_child(verbose, n, tty):
    code = SCRIPT.format(n=n, verbose=verbose)
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT)
    if not tty:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                             cwd=tempfile.gettempdir(), timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=slave, stderr=subprocess.PIPE,
                            env=env, cwd=tempfile.gettempdir())
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_verbose_1_on_a_terminal_draws_a_live_bar_updated_in_place():
    out = run_child(1, 48000, tty=True)  # epochs of 0.3 s or more: several live updates each
    assert out.rstrip().endswith("DONE")
    updates = out.count("\r")
    assert updates >= 4, out  # rewritten in place while each epoch ran
    live = [part for part in out.split("\r") if "ETA" in part]
    assert live and "samples/s" in live[0] and "loss" in live[0] and "accuracy" in live[0]
    finals = [ln for ln in out.split("\n") if ln.strip().startswith("\r") or "6000/6000" in ln]
    assert len([ln for ln in out.split("\n") if "6000/6000" in ln]) == 2, finals


def test_verbose_1_through_a_pipe_prints_one_line_per_epoch():
    out = run_child(1, 600, tty=False)
    assert "\r" not in out
    lines = out.strip().split("\n")
    assert lines[-1] == "DONE" and len(lines) == 3
    assert lines[0].startswith("epoch 1 ") and lines[1].startswith("epoch 2 ")
    assert "loss" in lines[0] and "accuracy" in lines[0]


def test_verbose_2_prints_one_line_per_epoch_even_on_a_terminal():
    out = run_child(2, 600, tty=True)
    assert "\r" not in out.replace("\r\n", "\n")
    assert [ln.split()[:2] for ln in out.strip().split("\n")[:2]] == [["epoch", "1"], ["epoch", "2"]]


def test_verbose_0_prints_nothing(capsys):
    X = np.random.default_rng(0).standard_normal((50, 4))
    m = fastnn.Sequential([fastnn.Dense(3)]).compile("sgd", "cross_entropy")
    m.fit(X, np.arange(50) % 3, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""


def test_on_epoch_progress_sees_the_epoch_advance_while_it_runs_in_c(backend):
    rng = np.random.default_rng(0)
    n = 24000 if backend == "c" else 4000  # epochs of several tenths of a second
    X, y = rng.standard_normal((n, 128)).astype(np.float32), rng.integers(0, 10, n)

    class Watch(fastnn.Callback):
        def __init__(self):
            self.seen = []

        def on_epoch_progress(self, epoch, logs):
            self.seen.append((epoch, logs["batches"], logs["samples"], logs["loss"], logs.get("accuracy")))

    w = Watch()
    m = fastnn.Sequential([fastnn.Dense(512, activation="relu"), fastnn.Dense(10)]).compile("sgd", "cross_entropy")
    m.fit(X, y, epochs=1, batch_size=4, callbacks=[w])
    batches = [b for _, b, _, _, _ in w.seen]
    assert batches == sorted(batches)
    mid = [s for s in w.seen if 0 < s[1] < n // 4]
    assert mid, f"no progress seen during the epoch: {w.seen}"  # published between batches
    for _, b, samples, loss, acc in mid:
        # the fields are read one by one while the engine writes them: a reading may straddle a batch
        assert abs(samples - 4 * b) <= 8 and np.isfinite(loss) and 0 <= acc <= 1

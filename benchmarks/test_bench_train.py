"""One MNIST training epoch, 784-256-128-10 ReLU, softmax cross entropy, Adam(1e-3), float32,
side by side: fastnn (one compiled call per epoch), a plain NumPy trainer, PyTorch, JAX (the
whole epoch as one jitted lax.scan) and scikit-learn's MLPClassifier.

Every entry is timed the same way: the model is built beforehand, `warmup` untimed epochs run
first (engine workspace, JIT compilation, caches), then `rounds` epochs are timed one by one,
each including its own shuffle and mini-batch gathering. Test accuracy after all of them is
recorded as a check that each implementation really trains.

Groups: "mnist-epoch" (batch 128, every implementation) and "mnist-epoch-bs32" (batch 32:
fastnn, NumPy, PyTorch), plus "numpy-openblas-env-unset": the NumPy trainer in a subprocess
whose environment lacks OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (OpenBLAS reads them when it
loads, so they can only be changed for a new process).
"""
import json
import os
import subprocess
import sys
import time
import warnings

import pytest

import fastnn
from _baselines import (OPENBLAS_VARS, JaxScanTrainer, NumpyMLP, TorchTrainer, blas_info,
                        describe_blas)

GROUPS = {128: "mnist-epoch", 32: "mnist-epoch-bs32"}
BOTH_BATCHES = pytest.mark.parametrize("batch", [128, 32])
MIN_ACCURACY = 0.9  # after one epoch every implementation is at about 0.95-0.97
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_numpy_worker.py")


def run_epochs(benchmark, epoch, rounds, **kwargs):
    benchmark.pedantic(epoch, rounds=rounds.rounds, warmup_rounds=rounds.warmup, iterations=1, **kwargs)


def record(benchmark, impl, batch, accuracy, **extra):
    benchmark.extra_info.update(impl=impl, batch=batch, test_acc=accuracy, **extra)
    assert accuracy > MIN_ACCURACY, f"{impl} reached only {accuracy:.4f} test accuracy"


@BOTH_BATCHES
def test_epoch_fastnn(benchmark, mnist, epoch_rounds, batch):
    benchmark.group = GROUPS[batch]
    model = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(128, activation="relu"),
                               fastnn.Dense(10)], seed=0)
    model.compile(fastnn.Adam(lr=1e-3), loss="cross_entropy")
    model.build(784)
    engine = []  # History's time: the compiled epoch call alone, without fit's argument checks

    def epoch():
        engine.append(model.fit(mnist.X, mnist.y, epochs=1, batch_size=batch).history["time"][0])

    run_epochs(benchmark, epoch, epoch_rounds)
    record(benchmark, "fastnn", batch, model.evaluate(mnist.Xt, mnist.yt)["accuracy"],
           engine_s=min(engine[-epoch_rounds.rounds:]), epochs=model.epochs_trained)


@BOTH_BATCHES
def test_epoch_numpy(benchmark, mnist, epoch_rounds, batch):
    benchmark.group = GROUPS[batch]
    net = NumpyMLP()
    run_epochs(benchmark, lambda: net.epoch(mnist.X, mnist.y, batch), epoch_rounds)
    record(benchmark, "numpy", batch, net.accuracy(mnist.Xt, mnist.yt), note=describe_blas(blas_info()))


@BOTH_BATCHES
def test_epoch_torch(benchmark, mnist, epoch_rounds, torch, batch):
    benchmark.group = GROUPS[batch]
    trainer = TorchTrainer(torch, mnist.X, mnist.y)
    run_epochs(benchmark, lambda: trainer.epoch(batch), epoch_rounds)
    record(benchmark, "torch", batch, trainer.accuracy(mnist.Xt, mnist.yt),
           note=f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def test_epoch_jax_scan(benchmark, mnist, epoch_rounds, jax):
    benchmark.group = GROUPS[128]
    trainer = JaxScanTrainer(jax, mnist.X, mnist.y, 128)  # compiles the epoch: not timed
    run_epochs(benchmark, trainer.epoch, epoch_rounds)
    record(benchmark, "jax-scan", 128, trainer.accuracy(mnist.Xt, mnist.yt),
           note=f"jax {jax.__version__}, {trainer.n_steps * 128} samples/epoch (last partial batch dropped)")


def test_epoch_sklearn(benchmark, mnist, epoch_rounds, sklearn_mlp):
    benchmark.group = GROUPS[128]
    clf = sklearn_mlp.MLPClassifier(hidden_layer_sizes=(256, 128), activation="relu", solver="adam",
                                    learning_rate_init=1e-3, batch_size=128, alpha=0.0, max_iter=1,
                                    tol=0.0, shuffle=True, random_state=0)
    classes = list(range(10))

    def epoch():  # partial_fit: one pass over the data, keeping weights and Adam state
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.partial_fit(mnist.X, mnist.y, classes=classes)

    run_epochs(benchmark, epoch, epoch_rounds)
    record(benchmark, "sklearn", 128, float(clf.score(mnist.Xt, mnist.yt)),
           note=f"MLPClassifier.partial_fit, {clf.coefs_[0].dtype}")


class Worker:
    """The NumPy trainer of _numpy_worker.py in a subprocess with the given environment."""

    def __init__(self, env):
        self.proc = subprocess.Popen([sys.executable, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)
        self._expect("ready")

    def _expect(self, prefix):
        line = self.proc.stdout.readline()
        if not line.startswith(prefix):
            raise RuntimeError(f"the NumPy worker answered {line!r} (exit code {self.proc.poll()})")
        return line[len(prefix):].strip()

    def ask(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._expect("ok")

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def test_epoch_numpy_openblas_env_unset(benchmark, epoch_rounds):
    benchmark.group = GROUPS[128]
    parent = blas_info()
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARS}
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))  # so the worker imports this fastnn
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    worker = Worker(env)
    try:
        run_epochs(benchmark, lambda: worker.ask("epoch 128"), epoch_rounds)
        accuracy = float(worker.ask("accuracy"))
        child = json.loads(worker.ask("info"))
    finally:
        worker.close()
    same = all(parent.get(k) is None for k in OPENBLAS_VARS)
    record(benchmark, "numpy-openblas-env-unset", 128, accuracy,
           note=f"subprocess: {describe_blas(child)}" + ("; same as this process" if same else
                                                         f"; this process: {describe_blas(parent)}"))


class _FakeTerminal:
    """A stream that says it is a terminal, so fit draws its live bar, and throws the text away."""

    def __init__(self):
        self.writes = 0

    def isatty(self):
        return True

    def write(self, text):
        self.writes += 1

    def flush(self):
        pass


class _TimedBar(fastnn.ProgressBar):
    """The live bar, timing its own redraws."""

    busy = 0.0

    def on_epoch_progress(self, epoch, logs):
        t = time.perf_counter()
        super().on_epoch_progress(epoch, logs)
        self.busy += time.perf_counter() - t


@pytest.mark.parametrize("progress", ["off", "live-bar"])
def test_epoch_fastnn_progress_cost(benchmark, mnist, epoch_rounds, progress):
    """The live progress bar's cost (a helper thread reading the engine's result record ten times
    a second and redrawing): group "mnist-epoch-progress", fastnn without it is the reference."""
    benchmark.group = "mnist-epoch-progress"
    model = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(128, activation="relu"),
                               fastnn.Dense(10)], seed=0)
    model.compile(fastnn.Adam(lr=1e-3), loss="cross_entropy")
    model.build(784)
    out = _FakeTerminal()
    bar = _TimedBar(stream=out)
    callbacks = [bar] if progress == "live-bar" else []
    epochs = []
    run_epochs(benchmark, lambda: epochs.append(model.fit(mnist.X, mnist.y, epochs=1, batch_size=128,
                                                          callbacks=callbacks).history["time"][0]),
               epoch_rounds)
    impl = "fastnn" if progress == "off" else "fastnn+live-bar"
    # the bar's own work (reading the record, formatting, writing), as a share of the epochs' time:
    # a figure the machine's noise does not swamp, unlike the difference of two epoch times
    extra = {"redraws": out.writes, "bar_share": bar.busy / sum(epochs)} if callbacks else {}
    record(benchmark, impl, 128, model.evaluate(mnist.Xt, mnist.yt)["accuracy"], **extra)


# -- float64, and thread scaling (issue 12's rows) ---------------------------------------------------
F64_ROWS = 20000


def test_epoch_fastnn_float64(benchmark, mnist, epoch_rounds):
    """Group "mnist-epoch-float64": batch 128 on the first 20,000 rows in float64 (target: at
    most 1/2 of PyTorch float64's time; reported in the ratio table, never asserted)."""
    benchmark.group = "mnist-epoch-float64"
    X, y = mnist.X[:F64_ROWS].astype("float64"), mnist.y[:F64_ROWS]
    model = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(128, activation="relu"),
                               fastnn.Dense(10)], seed=0, dtype="float64")
    model.compile(fastnn.Adam(lr=1e-3), loss="cross_entropy")
    run_epochs(benchmark, lambda: model.fit(X, y, epochs=1, batch_size=128), epoch_rounds)
    record(benchmark, "fastnn", 128, model.evaluate(mnist.Xt.astype("float64"), mnist.yt)["accuracy"],
           note="float64, 20,000 rows")


def test_epoch_torch_float64(benchmark, mnist, epoch_rounds, torch):
    benchmark.group = "mnist-epoch-float64"
    X, y = mnist.X[:F64_ROWS].astype("float64"), mnist.y[:F64_ROWS]
    trainer = TorchTrainer(torch, X, y)
    trainer.model = trainer.model.double()
    trainer.opt = torch.optim.Adam(trainer.model.parameters(), lr=1e-3)
    run_epochs(benchmark, lambda: trainer.epoch(128), epoch_rounds)
    record(benchmark, "torch", 128, trainer.accuracy(mnist.Xt.astype("float64"), mnist.yt),
           note=f"torch {torch.__version__} float64, {torch.get_num_threads()} threads")


@pytest.mark.parametrize("threads", [1, 2])
def test_epoch_fastnn_threads(benchmark, mnist, epoch_rounds, threads):
    """Group "mnist-epoch-threads": the batch-128 epoch on 1 and on 2 threads (fastnn.thread_limit;
    target: 2 threads at least 1.7x faster than 1). The "fastnn" entry is the 2-thread one."""
    if fastnn.get_num_threads() < threads:
        pytest.skip(f"fastnn uses {fastnn.get_num_threads()} thread(s) here")
    benchmark.group = "mnist-epoch-threads"
    model = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(128, activation="relu"),
                               fastnn.Dense(10)], seed=0)
    model.compile(fastnn.Adam(lr=1e-3), loss="cross_entropy")

    def epoch():
        with fastnn.thread_limit(threads):
            model.fit(mnist.X, mnist.y, epochs=1, batch_size=128)

    run_epochs(benchmark, epoch, epoch_rounds)
    record(benchmark, "fastnn" if threads == 2 else "fastnn-1-thread", 128,
           model.evaluate(mnist.Xt, mnist.yt)["accuracy"], threads=threads)

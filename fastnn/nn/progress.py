"""Progress output of fit: fit(verbose=1) on a terminal shows a live bar, updated in place about
ten times a second while the compiled epoch runs (batches, loss, accuracy, samples/s, ETA);
verbose=2, or verbose=1 when the output is not a terminal, prints one line per epoch; verbose=0
prints nothing.

The epoch never leaves C: the engine writes its running totals into a result record after each
batch, and `Poller` reads that record from a helper thread and hands it to the callbacks'
on_epoch_progress.
"""
import sys
import threading
import time

from .callbacks import Callback


def _fmt_logs(logs, skip=("time", "lr")):
    return "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if k not in skip)


def _fmt_seconds(s):
    if s < 60:
        return f"{s:.1f}s" if s < 10 else f"{s:.0f}s"
    m, s = divmod(int(s), 60)
    return f"{m}:{s:02d}" if m < 60 else f"{m // 60}:{m % 60:02d}:{s:02d}"


class EpochLogger(Callback):
    """One line per epoch: 'epoch 3/10  loss 0.1234  accuracy 0.9612  val_loss ...  1.23s'."""

    def __init__(self, stream=None):
        self.stream = stream

    def _out(self):
        return self.stream if self.stream is not None else sys.stdout

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        line = f"epoch {epoch + 1}  {_fmt_logs(logs)}  lr {logs.get('lr', float('nan')):.3g}  {_fmt_seconds(logs.get('time', 0.0))}"
        out = self._out()
        out.write(line + "\n")
        out.flush()


class ProgressBar(EpochLogger):
    """A live bar on a terminal, rewritten in place with carriage returns; the final state of each
    epoch stays on its own line."""

    width = 24

    def __init__(self, stream=None):
        super().__init__(stream)
        self._lock = threading.Lock()
        self._live = False

    def on_epoch_begin(self, epoch, logs=None):
        with self._lock:
            self._live = True
            self._last_len = 0

    def _bar(self, done, total):
        filled = int(self.width * done / total) if total else self.width
        return "[" + "=" * filled + (">" if filled < self.width else "") + "." * (self.width - filled - 1) + "]"

    def _write(self, text, end=""):
        out = self._out()
        pad = max(self._last_len - len(text), 0)
        out.write("\r" + text + " " * pad + end)
        out.flush()
        self._last_len = 0 if end else len(text)

    def on_epoch_progress(self, epoch, logs):
        steps = self.params.get("steps", 0)
        done, elapsed = logs["batches"], logs["elapsed"]
        rate = logs["samples"] / elapsed if elapsed > 0 else 0.0
        eta = (steps - done) * elapsed / done if done else float("nan")
        parts = [f"epoch {epoch + 1}", f"{done}/{steps}", self._bar(done, steps)]
        if done:
            parts.append(f"loss {logs['loss']:.4f}")
            if "accuracy" in logs:
                parts.append(f"accuracy {logs['accuracy']:.4f}")
            parts.append(f"{rate:,.0f} samples/s")
            parts.append(f"ETA {_fmt_seconds(eta)}")
        with self._lock:
            if self._live:
                self._write("  ".join(parts))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        steps = self.params.get("steps", 0)
        with self._lock:
            self._live = False
            line = (f"epoch {epoch + 1}  {steps}/{steps} {self._bar(steps, steps)}  {_fmt_logs(logs)}"
                    f"  {_fmt_seconds(logs.get('time', 0.0))}")
            self._write(line, end="\n")

    def on_train_end(self, logs=None):
        with self._lock:
            if self._live:  # interrupted mid-epoch: end the bar's line
                self._live = False
                self._out().write("\n")
                self._out().flush()


def for_verbose(verbose, stream=None):
    """The progress callback for fit's `verbose`, or None."""
    if not verbose:
        return None
    out = stream if stream is not None else sys.stdout
    is_tty = getattr(out, "isatty", lambda: False)
    try:
        tty = bool(is_tty())
    except Exception:
        tty = False
    return ProgressBar(stream) if verbose == 1 and tty else EpochLogger(stream)


_POLLER_THREADS = {}  # thread -> the model whose epoch its Poller reports (see progress_model)


def progress_model():
    """The model whose epoch the calling thread reports (on_epoch_progress), or None."""
    return _POLLER_THREADS.get(threading.current_thread())


class Poller:
    """While an epoch runs, read the engine's live result record about every `interval` seconds
    and pass {'batch', 'batches', 'samples', 'loss', 'accuracy', 'elapsed'} to
    callbacks.on_epoch_progress from a helper thread. A context manager around the epoch call."""

    def __init__(self, callbacks, epoch, result, accuracy_denominator, interval=0.1, model=None):
        self.callbacks, self.epoch, self.result, self.model = callbacks, epoch, result, model
        self.acc_den, self.interval = accuracy_denominator, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fastnn-progress", daemon=True)
        self.error = None  # what on_epoch_progress raised: fit raises it once the epoch is over

    def logs(self):
        r = self.result
        batches, samples = int(r["batches"]), int(r["samples"])
        wsum = float(r["weight_sum"])
        logs = {"batch": batches, "batches": batches, "samples": samples,
                "loss": float(r["loss_sum"]) / wsum if wsum > 0 else float("nan"),
                "elapsed": time.perf_counter() - self.t0}
        if self.acc_den is not None:
            den = self.acc_den(samples)
            logs["accuracy"] = int(r["correct"]) / den if den else float("nan")
        return logs

    def _run(self):
        while True:
            try:
                self.callbacks.on_epoch_progress(self.epoch, self.logs())
            # kept for fit to raise, KeyboardInterrupt too (a thread's own would be printed and
            # lost, and fit would go on); no more calls this epoch
            except BaseException as exc:
                self.error = exc
                return
            if self._stop.wait(self.interval):
                return

    def __enter__(self):
        self.t0 = time.perf_counter()
        _POLLER_THREADS[self._thread] = self.model
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        _POLLER_THREADS.pop(self._thread, None)

"""Inference and checks on a built model's state (a fastnn.nn._training.Built): outputs in
chunks on engines of their own, evaluation with the loss record's rules, R^2, and the gradient of
one batch. Sequential validates the inputs and delegates here."""
import numpy as np

from .. import _engine as _backend
from .._engine.codes import CTR_STEP
from .._engine.validation import check_matrix, pins

PREDICT_CHUNK = 1024  # rows per inference chunk on up to 4 threads (predict_rows)
PIN_WORK = 1 << 20  # a predict of rows x parameters above this pins its input (pins)
PREDICT_ROWS_PER_THREAD = 256  # ... or this many per thread, when that is more


def predict_rows(n):
    """Rows per engine call of an inference of n rows: all n up to PREDICT_CHUNK; else
    PREDICT_CHUNK, or 256 per thread when that is more (at most n). On 16 threads (16-core Xeon,
    10,000 MNIST rows, 784-256-128-10), chunks of 1024 rows ran at 66 % of the SGEMM rate and
    chunks of 4096 at 89 %: every chunk is three products, each a join of the team. On 2
    threads the size made no difference. A row's result does not depend on the chunk size: the
    engine never leaves a last chunk of a few rows (which its GEMM sums another way)."""
    if n <= PREDICT_CHUNK:
        return n
    return min(n, max(PREDICT_CHUNK, PREDICT_ROWS_PER_THREAD * _backend.current().get_num_threads()))


def outputs(built, X, link):
    """The network's outputs for X (the loss's link applied when `link`), inference mode.

    An ndarray that the engine reads as it is (C-contiguous, 2-D, of the model's dtype and width,
    with rows) takes the lean path of a single prediction: one engine call checks it, allocates
    the output and checks X for NaN and infinity. Anything else goes through check_matrix first.
    Both refuse the same inputs with the same errors."""
    plan, module = built.plan, _backend.current()
    # see pins; not for a call over in microseconds (a few rows through a small model: the cost
    # of the pins would show in the lean path), judged by values times parameters a row
    held = (pins(X) if isinstance(X, np.ndarray) and X.size * built.params.size > PIN_WORK * plan.n_inputs
            else None)
    n = module.lean_rows(X, built.params, plan.n_inputs)  # only a candidate takes an engine
    if n:  # an engine serves one call at a time itself
        engine = built.pool.get(n if n <= PREDICT_CHUNK else predict_rows(n), "infer", module)[0]
        out = engine.predict_lean(built.params, built.state, X, link)
        if out is not None:
            return out
    dtype = built.params.dtype
    X = check_matrix(X, "X", dtype, n_cols=plan.n_inputs)
    n = X.shape[0]
    out = np.empty((n, plan.n_outputs), dtype)
    built.pool.get(predict_rows(n), "infer")[0].predict(out, built.params, built.state, X, link)
    return out


def evaluate(built, X, T, labels, sw):
    """{'loss'} and, for classification losses, {'accuracy'} by the loss record's rule."""
    held = pins(X, T, labels, sw)  # see pins
    z = outputs(built, X, False)
    loss = built.plan.loss
    out = {"loss": _backend.current().loss_forward(loss.code, z, T, labels, sw)}
    if loss.is_classifier:
        out["accuracy"] = loss.correct(z, T, labels) / loss.accuracy_denominator(*z.shape)
    return out


def r2(T, P, sw):
    """Coefficient of determination, averaged over outputs (scikit-learn's r2_score)."""
    w = np.ones(len(T)) if sw is None else sw.astype(np.float64)
    res = (w[:, None] * (T - P) ** 2).sum(0)
    tot = (w[:, None] * (T - np.average(T, axis=0, weights=w)) ** 2).sum(0)
    return float(np.mean(1 - res / np.where(tot == 0, 1, tot)))


def gradient(built, X, T, labels, sw, step=None):
    """(loss, flat gradient) of one batch in training mode; nothing is updated."""
    grads = np.empty(built.plan.n_params, built.params.dtype)
    step = int(built.counters[CTR_STEP]) if step is None else step
    held = pins(X, T, labels, sw)  # see pins
    engine, lock = built.pool.get(X.shape[0], "gradient")  # never the engine a running fit holds
    with lock:
        loss = engine.gradient(grads, built.params, X, T, labels, sw, step)
    return loss, grads


GRADIENT_CHUNK = 4096  # rows per engine call of a whole-data gradient: its workspace never grows past it


def whole_gradient(built, grads, X, T, labels, sw, chunk=GRADIENT_CHUNK):
    """The loss of all of X and its gradient (into `grads`), training mode, nothing updated.

    The engine's gradient of chunks of at most `chunk` rows; each chunk's loss and gradient are
    normalised by its own weight sum W_c (rows, or sample weights), so chunk c counts W_c / W of
    the whole (W: the weight sum of all rows). The total equals the one-batch gradient of all rows
    to rounding (a chunk whose weights sum to 0 counts nothing); one chunk when n <= chunk.
    Non-finite: NaN, and grads all NaN."""
    n = X.shape[0]
    step = int(built.counters[CTR_STEP])
    held = pins(X, T, labels, sw)  # see pins
    engine, lock = built.pool.get(min(chunk, n), "gradient")
    with lock:
        if n <= chunk:
            loss = engine.gradient(grads, built.params, X, T, labels, sw, step)
            if not np.isfinite(loss):
                grads[...] = np.nan
            return loss
        total = float(n) if sw is None else float(np.sum(sw, dtype=np.float64))
        part = np.empty_like(grads)
        grads[...] = 0
        loss = 0.0
        for start in range(0, n, chunk):
            rows = slice(start, min(start + chunk, n))
            w = None if sw is None else sw[rows]
            weight = rows.stop - rows.start if w is None else float(np.sum(w, dtype=np.float64))
            share = weight / total if total != 0 else 0.0
            value = engine.gradient(part, built.params, X[rows], None if T is None else T[rows],
                                    None if labels is None else labels[rows], w, step)
            if not np.isfinite(value):
                grads[...] = np.nan
                return float("nan")
            loss += share * value
            grads += grads.dtype.type(share) * part
    return loss

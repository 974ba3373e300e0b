"""fastnn on Dask (issue 11): searches through joblib's dask backend, out-of-core training with
dask-ml's Incremental, dask-ml's incremental searches, and one compiled thread per worker thread.

The cluster tests share ONE real distributed.LocalCluster for the module: 2 worker processes with
1 thread each, on 127.0.0.1, every test under a deadline (a watchdog closes the client, so a hung
computation fails its test instead of hanging the run). They skip without dask, distributed or
dask-ml (pip install fastnn[dask]).

The workers' memory limit is small (32 MiB) and the out-of-core array is 4x that. dask keeps the
results a worker stores under `target` (0.6) of its limit, spilling the excess to disk: 3 blocks
here. The process-level thresholds (spill, pause and terminate on the worker's RSS) are off,
because the interpreter and the libraries alone take more than this limit.
"""
import contextlib
import copy
import os
import pickle
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import fastnn

pytest.importorskip("sklearn")

from fastnn.datasets import load_mnist  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

N_WORKERS = 2
MEMORY_LIMIT = 32 * 2 ** 20  # per worker; it keeps stored results under MEMORY_TARGET of this
MEMORY_TARGET = 0.6
DEADLINE_S = 120  # per test; the whole module takes well under a minute
INCREMENTAL_SEARCH_FAILURE = "Attempting to use an asynchronous Client in a synchronous context of `dask.compute`"

try:  # the worker processes cannot import this file: send its functions and classes by value
    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
except (ImportError, ValueError):
    pass


# -- what needs neither dask nor a cluster ------------------------------------------------------
def test_fastnn_imports_and_trains_without_dask_and_threadpoolctl():
    code = ("import sys\n"
            "for m in ('dask', 'distributed', 'dask_ml', 'threadpoolctl'): sys.modules[m] = None\n"
            "import numpy as np, fastnn\n"
            "from fastnn._engine import threadpool\n"
            "assert threadpool._registered is None\n"
            "m = fastnn.Sequential([fastnn.Dense(4, activation='relu'), fastnn.Dense(2)], seed=0)\n"
            "m.compile(fastnn.Adam(), loss='cross_entropy')\n"
            "m.fit(np.ones((8, 3), np.float32), np.array([0, 1] * 4), epochs=1, verbose=0)\n"
            "with fastnn.thread_limit(1): assert fastnn.get_num_threads() == 1\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def _fitted(hidden=(32,), solver="adam", n=300, seed=0):
    X, y = load_mnist("train", limit=n)
    est = fastnn.MLPClassifier(hidden, solver=solver, random_state=seed, batch_size=50)
    est.partial_fit(X, y, classes=np.arange(10))
    return est, X, y


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_deepcopy_of_a_fitted_estimator_continues_exactly_as_the_original(solver):
    """dask-ml's IncrementalSearchCV deep-copies the model before every partial_fit: the copy must
    carry the weights, the optimizer's state and the counters, so both go on identically."""
    est, X, y = _fitted(solver=solver)
    twin = copy.deepcopy(est)
    for e in (est, twin):
        e.partial_fit(X, y)
    for a, b in zip(est.model_.get_weights(), twin.model_.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(est.model_._built.slots, twin.model_._built.slots)
    assert est.loss_curve_ == twin.loss_curve_ and est.t_ == twin.t_
    np.testing.assert_array_equal(est.predict_proba(X), twin.predict_proba(X))


def test_deepcopy_shares_no_buffer_with_the_original():
    est, X, y = _fitted()
    before = [w.copy() for w in est.model_.get_weights()]
    twin = copy.deepcopy(est)
    b, t = est.model_._built, twin.model_._built
    for name in ("params", "slots", "state", "counters"):
        assert not np.shares_memory(getattr(b, name), getattr(t, name)), name
    assert twin.model_.layers[0]._owner() is twin.model_
    twin.partial_fit(X, y)
    for a, w in zip(est.model_.get_weights(), before):
        np.testing.assert_array_equal(a, w)  # training the copy left the original alone
    assert twin.history_ is twin.model_.history and twin.history_ is not est.history_


# -- the cluster ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("dask_ml")
    pytest.importorskip("joblib")
    memory = {"distributed.worker.memory.target": MEMORY_TARGET, "distributed.worker.memory.spill": False,
              "distributed.worker.memory.pause": False, "distributed.worker.memory.terminate": False}
    with _own_environment(), dask.config.set(memory):
        lc = distributed.LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, processes=True,
                                      host="127.0.0.1", dashboard_address=None, memory_limit=MEMORY_LIMIT)
    client = distributed.Client(lc)
    try:
        client.wait_for_workers(N_WORKERS, timeout=60)
        yield client
    finally:
        with _own_environment():
            client.close()
            lc.close()


@contextlib.contextmanager
def _own_environment():
    """Starting a LocalCluster sets OMP_NUM_THREADS=1 (and the like) in this process's own
    environment, for its workers to inherit: put this process's back, for the tests after."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def client(cluster):
    """The module's client, under a deadline: past it, a watchdog closes the client so the
    computation in progress raises; the workers it starts with must last it. A worker the
    scheduler lost between tests (missed heartbeats on a starved machine: CI once found none
    registered at a test's start, then two new ones) is waited for first."""
    cluster.wait_for_workers(N_WORKERS, timeout=60)
    workers = sorted(cluster.scheduler_info()["workers"])
    watchdog = threading.Timer(DEADLINE_S, cluster.close)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield cluster
    finally:
        watchdog.cancel()
    assert sorted(cluster.scheduler_info()["workers"]) == workers, "a worker died or restarted"


def _threads_in_a_worker_task():
    """Runs in a worker: the environment the nanny gave it, fastnn's count, threadpoolctl's view
    of fastnn, and the count the compiled calls got during a fit."""
    import fastnn
    seen = []

    class Spy(fastnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(fastnn.get_num_threads())

    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fastnn.MLPClassifier((8,), max_iter=2, random_state=0, callbacks=[Spy()]).fit(
            rng.normal(size=(64, 5)), rng.integers(0, 3, 64))
    try:
        from threadpoolctl import threadpool_info
        tpc = [i["num_threads"] for i in threadpool_info() if i["internal_api"] == "fastnn"]
    except ImportError:
        tpc = None
    return {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "count": fastnn.get_num_threads(),
            "during_fit": seen, "threadpoolctl": tpc}


def test_a_worker_with_one_thread_runs_fastnn_on_one_thread(client):
    futures = [client.submit(_threads_in_a_worker_task, pure=False, workers=[w])
               for w in client.scheduler_info()["workers"]]
    for got in client.gather(futures):
        assert got["OMP_NUM_THREADS"] == "1"
        assert got["count"] == 1 and got["during_fit"] == [1, 1]
        assert got["threadpoolctl"] in (None, [1])


def _search_data():
    X, y = load_mnist("train", limit=1200)
    return X, y


def _search(kind):
    from scipy.stats import loguniform
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    est = fastnn.MLPClassifier((16,), max_iter=4, batch_size=100, random_state=0)
    scoring = ["accuracy", "neg_log_loss"]  # the log loss tells apart any two different models
    if kind == "grid":
        return GridSearchCV(est, {"alpha": [1e-4, 1e-1], "learning_rate_init": [1e-3, 1e-2]}, cv=2,
                            scoring=scoring, refit="accuracy")
    return RandomizedSearchCV(est, {"alpha": loguniform(1e-5, 1e-1), "learning_rate_init": loguniform(1e-4, 1e-2)},
                              n_iter=4, cv=2, random_state=0, scoring=scoring, refit="accuracy")


@pytest.mark.parametrize("kind", ["grid", "randomized"])
def test_search_under_the_dask_backend_matches_the_serial_search(client, kind):
    import joblib
    from distributed import get_task_stream

    X, y = _search_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        serial = _search(kind).set_params(n_jobs=1).fit(X, y)
        with get_task_stream(client) as stream, joblib.parallel_backend("dask"):
            spread = _search(kind).set_params(n_jobs=-1).fit(X, y)
    ran_on = {t["worker"] for t in stream.data}
    assert ran_on == set(client.scheduler_info()["workers"])  # the fits ran on both workers
    for key in ("params", "split0_test_accuracy", "split1_test_accuracy", "split0_test_neg_log_loss",
                "split1_test_neg_log_loss", "mean_test_accuracy", "rank_test_accuracy"):
        assert list(serial.cv_results_[key]) == list(spread.cv_results_[key]), key
    assert serial.best_params_ == spread.best_params_


# -- out-of-core: dask-ml's Incremental over .npy shards --------------------------------------------
BLOCK_ROWS, N_BLOCKS = 1000, 20  # 20 blocks of 1000 MNIST rows in float64: 125 MiB on disk


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    X, y = load_mnist("train", limit=BLOCK_ROWS * N_BLOCKS)
    d = tmp_path_factory.mktemp("mnist-shards")
    paths = []
    for i in range(N_BLOCKS):
        rows = slice(i * BLOCK_ROWS, (i + 1) * BLOCK_ROWS)
        px, py = str(d / f"X{i:03d}.npy"), str(d / f"y{i:03d}.npy")
        np.save(px, X[rows].astype(np.float64))
        np.save(py, y[rows])
        paths.append((px, py))
    return paths, X, y


def _read_shard(paths, block_id=None):
    return np.load(paths[block_id[0]])


def _lazy_arrays(paths):
    """The shards as dask arrays, one task per block (np.load, run by whichever worker needs it)."""
    import dask.array as da
    xs, ys = [px for px, _ in paths], [py for _, py in paths]
    rows = (BLOCK_ROWS,) * len(paths)
    X = da.map_blocks(_read_shard, xs, chunks=(rows, (784,)), dtype=np.float64, meta=np.empty((0, 0)))
    y = da.map_blocks(_read_shard, ys, chunks=(rows,), dtype=np.int64, meta=np.empty((0,), np.int64))
    return X, y


class _BlockCounter:
    """A worker plugin: the most blocks of the array named `name` the worker ever held in memory
    at once, and how many it spilled to disk."""
    name = "fastnn-block-counter"
    idempotent = False

    def __init__(self, array_name):
        self.array_name = array_name

    def setup(self, worker):
        self.worker, self.peak, self.spilled = worker, 0, set()

    def _ours(self, keys):
        return {k for k in keys if isinstance(k, tuple) and k[0] == self.array_name}

    def transition(self, key, start, finish, **kwargs):
        data = self.worker.data
        self.peak = max(self.peak, len(self._ours(list(getattr(data, "fast", data).keys()))))
        self.spilled |= self._ours(list(getattr(data, "slow", {}).keys()))


def _count_blocks(client, X):
    from distributed.diagnostics.plugin import WorkerPlugin
    client.register_plugin(type("BlockCounter", (_BlockCounter, WorkerPlugin), {})(X.name))


def _held_blocks(client):
    """{worker: (peak blocks held, blocks spilled)} since _count_blocks."""
    return client.run(lambda dask_worker: (dask_worker.plugins[_BlockCounter.name].peak,
                                           len(dask_worker.plugins[_BlockCounter.name].spilled)))


def test_incremental_streams_shards_larger_than_a_worker_and_learns(client, shards):
    """Incremental.fit (one pass, pinned to one worker) then Incremental.partial_fit two blocks at
    a time (a second pass, anywhere), over an array 4x a worker's memory limit: no worker holds
    more blocks in memory than its budget, the model that travels between tasks stays small, and
    the test accuracy is that of an in-memory fit of the same two epochs."""
    import dask
    from dask_ml.wrappers import Incremental

    paths, X, y = shards
    Xt, yt = load_mnist("test", limit=5000)
    est = fastnn.MLPClassifier((64,), random_state=0, dtype="float32")
    worker = sorted(client.scheduler_info()["workers"])[0]

    # .fit over the whole array. Its partial_fit calls are a chain, one after the other; pinned to
    # the worker that runs them, the reads interleave with them (a read or two ahead, while the
    # next partial_fit makes its round trip to the scheduler). Unpinned, dask lets the idle worker
    # read blocks ahead of the chain without bound: 17 to 29 of the blocks, before the budget.
    with dask.annotate(workers=[worker], allow_other_workers=False):
        Xd, yd = _lazy_arrays(paths)
        _count_blocks(client, Xd)
        inc = Incremental(est, random_state=0).fit(Xd, yd, classes=np.arange(10))
    fit_held = _held_blocks(client)
    one_epoch = inc.estimator_.n_iter_, inc.estimator_.t_

    # .partial_fit: a second pass, a window of 2 blocks per call, on either worker
    Xd, yd = _lazy_arrays(paths)
    _count_blocks(client, Xd)
    for i in range(0, N_BLOCKS, 2):
        inc.partial_fit(Xd.blocks[i:i + 2], yd.blocks[i:i + 2], classes=np.arange(10))
    window_held = _held_blocks(client)

    block = BLOCK_ROWS * 784 * 8
    assert Xd.nbytes > 3.5 * MEMORY_LIMIT
    budget = int(MEMORY_TARGET * MEMORY_LIMIT // block)  # 3 blocks
    for name, held in (("fit", fit_held), ("partial_fit", window_held)):
        for w, (peak, spilled) in held.items():
            assert 0 <= peak <= budget, f"{name}: worker {w} held {peak} blocks at once ({spilled} spilled)"
    assert sorted(peak > 0 for peak, _ in fit_held.values()) == [False, True]  # the pinned worker only
    assert len(pickle.dumps(inc.estimator_)) < block / 4  # no block travels with the model
    assert one_epoch == (1, BLOCK_ROWS * N_BLOCKS)  # the last block's partial_fit; t_ counts them all
    assert inc.estimator_.t_ == 2 * BLOCK_ROWS * N_BLOCKS
    streamed = (inc.predict(Xt) == yt).mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        in_memory = fastnn.MLPClassifier((64,), random_state=0, max_iter=2).fit(X, y)
    assert streamed > 0.85 and abs(streamed - (in_memory.predict(Xt) == yt).mean()) < 0.02


# -- dask-ml's incremental searches -----------------------------------------------------------------
@pytest.mark.xfail(raises=RuntimeError, strict=False,
                   reason=f"dask 2026.8 + dask-ml 2025.1: {INCREMENTAL_SEARCH_FAILURE} (any estimator, "
                          "scikit-learn's included; dask-ml is not patched here)")
@pytest.mark.parametrize("search", ["IncrementalSearchCV", "HyperbandSearchCV"])
def test_incremental_search_on_the_cluster(client, search):
    import dask.array as da
    import dask_ml.model_selection as ms

    X, y = load_mnist("train", limit=2000)
    Xd, yd = da.from_array(X, chunks=(500, -1)), da.from_array(y, chunks=500)
    params = {"alpha": [1e-4, 1e-2], "learning_rate_init": [1e-3, 1e-2]}
    kw = {"n_initial_parameters": 4, "max_iter": 3, "decay_rate": None} if search == "IncrementalSearchCV" \
        else {"max_iter": 3}
    searches = []
    for est in (fastnn.MLPClassifier((16,), random_state=0), MLPClassifier((16,), random_state=0)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            searches.append(getattr(ms, search)(est, params, random_state=0, **kw).fit(Xd, yd, classes=np.arange(10)))
    ours, theirs = searches  # three partial_fit calls of 500 rows: about 0.4-0.5, as scikit-learn's own
    assert ours.best_score_ == pytest.approx(theirs.best_score_, abs=0.02) and ours.best_score_ > 0.2
    assert ours.best_params_ == theirs.best_params_ and set(ours.best_params_) == set(params)

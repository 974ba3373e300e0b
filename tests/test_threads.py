"""Thread counts: fastnn.set_num_threads (process-wide) and fastnn.thread_limit (the calling
thread's own cap, what the estimators' n_threads uses)."""
import threading
import time

import numpy as np
import pytest

import fastnn
from fastnn import _engine


@pytest.fixture
def two_threads():
    before = fastnn.get_num_threads()
    fastnn.set_num_threads(2)
    yield
    fastnn.set_num_threads(before)


@pytest.mark.parametrize("backend", _engine.available_backends())
def test_thread_limit_caps_only_the_calling_thread_and_nests(backend, two_threads):
    be = _engine._BACKENDS[backend]
    full = be.get_num_threads()
    seen = {}
    with fastnn.thread_limit(1):
        assert be.get_num_threads() == 1 and be.get_thread_limit() == 1
        other = threading.Thread(target=lambda: seen.setdefault("other", be.get_num_threads()))
        other.start()
        other.join()
        with fastnn.thread_limit(5):  # a cap above the count changes nothing
            assert be.get_num_threads() == full and be.get_thread_limit() == 5
        assert be.get_thread_limit() == 1
        with fastnn.thread_limit(None):
            assert be.get_thread_limit() == 1
    assert seen["other"] == full
    assert be.get_thread_limit() == 0 and be.get_num_threads() == full


def test_thread_limit_is_restored_when_the_block_raises(two_threads):
    with pytest.raises(KeyError):
        with fastnn.thread_limit(1):
            raise KeyError
    assert all(b.get_thread_limit() == 0 for b in _engine._BACKENDS.values())


@pytest.mark.parametrize("n", [0, -1, 1.5, "2", True])
def test_thread_limit_refuses_what_is_not_a_positive_int(n):
    with pytest.raises(ValueError, match="positive int"):
        fastnn.thread_limit(n)


def test_a_thread_limit_beyond_a_c_int_is_no_cap_on_either_backend(two_threads):
    """The hostile tester's finding: thread_limit(2**31) raised OverflowError from the compiled
    backend after the NumPy backend had taken the cap, and left it there."""
    full = fastnn.get_num_threads()
    with fastnn.thread_limit(2**31):
        assert fastnn.get_num_threads() == full
    assert all(b.get_thread_limit() == 0 for b in _engine._BACKENDS.values())


@pytest.mark.parametrize("n", [True, False, 1.0, "2", None])
def test_set_num_threads_takes_only_an_integer(n, two_threads):
    with pytest.raises(TypeError, match="takes an integer"):
        fastnn.set_num_threads(n)
    assert fastnn.get_num_threads() == 2


def test_estimator_n_threads_holds_during_fit_and_predict(two_threads):
    pytest.importorskip("sklearn")
    from sklearn.exceptions import ConvergenceWarning

    class Spy(fastnn.Callback):
        def on_epoch_end(self, epoch, logs=None):  # runs in the fitting thread
            counts.append(fastnn.get_num_threads())

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
    full = fastnn.get_num_threads()
    for n_threads, expected in ((1, 1), (None, full)):
        counts = []
        est = fastnn.MLPClassifier((5,), max_iter=2, random_state=0, n_threads=n_threads,
                                   callbacks=[Spy()])
        with pytest.warns(ConvergenceWarning):
            est.fit(X, y)
        assert counts == [expected, expected]
        assert fastnn.get_num_threads() == full  # restored after fit
    with pytest.raises(ValueError, match="n_threads"):
        fastnn.MLPClassifier(n_threads=0).fit(X, y)
    est.set_params(n_threads=np.int64(1))  # NumPy integers, as a search over np.arange gives them
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    assert counts[-1] == 1 and est.predict(X).shape == (60,)
    with fastnn.thread_limit(np.int64(1)):
        assert fastnn.get_num_threads() == 1
    for bad in (True, np.bool_(True), 1.0, np.int64(0)):
        with pytest.raises(ValueError, match="a thread limit must be a positive int or None"):
            fastnn.thread_limit(bad)
    est.set_params(n_threads=0)  # after the fit: predict names the parameter too
    for call in (est.predict, est.predict_proba):
        with pytest.raises(ValueError, match="The 'n_threads' parameter of MLPClassifier must be an int"):
            call(X)


needs_team = pytest.mark.skipif(
    "c" not in _engine.available_backends() or not _engine._BACKENDS["c"].openmp_enabled()
    or _engine._BACKENDS["c"].get_cpu_cap() < 2, reason="needs the compiled engine with OpenMP and 2 CPUs")


def _teams():
    return _engine._BACKENDS["c"].teams_started()


@needs_team
@pytest.mark.parametrize("call", ["predict 16 rows", "predict 1 dense row", "partial_fit 16 rows"])
def test_a_short_call_after_a_pause_runs_on_one_thread_and_close_calls_on_the_team(call, two_threads):
    """A worker thread that has gone to sleep wakes slowly: the call's end waited for it, and on
    the 2-core VM a prediction of 16 rows made after 50 ms of quiet took a median 5.8 ms on two
    threads against 0.6 ms on one. A short call (its rows x parameters below FNN_COLD_WORK) that
    follows no other call within 2 ms runs on one thread; one that follows closely takes the
    team, whose workers are then awake. Results do not depend on it (tests/test_inference.py)."""
    fastnn.set_backend("c")
    model = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(128, activation="relu"),
                               fastnn.Dense(10)], seed=0).compile("sgd", "cross_entropy").build(784)
    rng = np.random.default_rng(0)
    X = rng.random((1 if "1 dense" in call else 16, 784), dtype=np.float32)
    y = rng.integers(0, 10, X.shape[0])
    run = (lambda: model.partial_fit(X, y)) if "partial_fit" in call else (lambda: model.predict_proba(X))
    run()
    time.sleep(0.05)  # nothing runs: the workers sleep
    before = _teams()
    run()
    assert _teams() == before  # one thread
    for _ in range(20):
        run()
    assert _teams() > before  # close calls: the team
    with fastnn.thread_limit(1):  # one thread, whatever the timing
        now = _teams()
        for _ in range(5):
            run()
        assert _teams() == now


@needs_team
def test_a_long_call_takes_the_team_after_a_pause(two_threads):
    """A prediction of many rows does not wait for a recent call: waking a worker costs it
    little."""
    fastnn.set_backend("c")
    model = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(10)],
                              seed=0).compile("sgd", "cross_entropy").build(784)
    X = np.random.default_rng(0).random((2000, 784), dtype=np.float32)
    time.sleep(0.05)
    before = _teams()
    model.predict_proba(X)
    assert _teams() == before + 1


@needs_team
def test_a_small_plain_sgd_epoch_of_single_rows_runs_on_one_thread(two_threads):
    """Plain SGD's online step at batch 1 on a network of under 2^18 parameters is a few
    microseconds a step, and the team's joins cost more than the second core brings (network.c,
    sparse_epoch): such an epoch runs on one thread. Larger batches or networks, and Adam,
    momentum or a penalty (which update every parameter each step) keep the team. The results do not
    depend on it (tests/test_online_step.py, thread counts)."""
    fastnn.set_backend("c")
    rng = np.random.default_rng(0)
    X, y = rng.random((64, 784), dtype=np.float32), rng.integers(0, 10, 64)

    def teams(hidden, opt, batch):
        model = fastnn.Sequential([fastnn.Dense(hidden, activation="relu"), fastnn.Dense(10)], seed=0)
        model.compile(opt, "cross_entropy").build(784)
        before = _teams()
        model.fit(X, y, epochs=1, batch_size=batch)
        return _teams() - before

    small, large = 128, 512  # 101,898 and 407,050 parameters
    assert teams(small, fastnn.SGD(0.01), 1) == 0
    assert teams(small, fastnn.SGD(0.01), 2) == 0  # 2 x 101,898 multiply-adds a step: under 2^18
    assert teams(small, fastnn.SGD(0.01), 3) == 1
    assert teams(large, fastnn.SGD(0.01), 1) == 1
    for opt in (fastnn.Adam(1e-3), fastnn.SGD(0.01, momentum=0.9), fastnn.SGD(0.01, l2=1e-4)):
        assert teams(small, opt, 1) == 1, opt
    with fastnn.thread_limit(1):
        assert teams(large, fastnn.Adam(1e-3), 1) == 0

"""threadpoolctl reaches fastnn's compiled threads (fastnn/_engine/threadpool.py): threadpool_info
lists fastnn, threadpool_limits and ThreadpoolController().limit cap the calling thread, restore
what they found, and agree with fastnn.thread_limit and the estimators' n_threads. Skipped without
threadpoolctl or the compiled backend; the counts need 2 threads to tell a cap from none, so
without OpenMP (FASTNN_NO_OPENMP=1) they skip too."""
import os
import threading
import warnings

import numpy as np
import pytest

import fastnn
from fastnn import _engine

threadpoolctl = pytest.importorskip("threadpoolctl")
if _engine._ext is None:
    pytest.skip("the compiled backend is not built", allow_module_level=True)
ext = _engine._ext


@pytest.fixture
def two_threads():
    before = ext.get_num_threads()
    ext.set_num_threads(2)
    if ext.get_num_threads() < 2:
        ext.set_num_threads(before)
        pytest.skip("fewer than 2 threads here (one core, or a build without OpenMP)")
    yield 2
    ext.set_num_threads(before)


def _fastnn_entries(info=None):
    return [i for i in (info or threadpoolctl.threadpool_info()) if i["internal_api"] == "fastnn"]


def _in_another_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def _no_cap_left():
    return all(be.get_thread_limit() == 0 for be in _engine._BACKENDS.values())


def test_threadpool_info_lists_fastnn():  # with or without OpenMP
    (entry,) = _fastnn_entries()
    assert entry["user_api"] == "openmp" and entry["version"] == fastnn.__version__
    assert os.path.realpath(entry["filepath"]) == os.path.realpath(ext.__file__)
    assert entry["num_threads"] == ext.get_num_threads()
    with threadpoolctl.threadpool_limits(1):
        assert fastnn.get_num_threads() == 1
    assert _no_cap_left()


def test_threadpool_info_gives_the_count_and_its_scope(two_threads):
    (entry,) = _fastnn_entries(threadpoolctl.threadpool_info(debugging_info=True))
    assert entry["num_threads"] == 2 and entry["thread_limit_scope"] == "current_thread"
    with fastnn.thread_limit(1):
        assert [i["num_threads"] for i in _fastnn_entries()] == [1]


LIMITERS = {
    "threadpool_limits(1)": lambda: threadpoolctl.threadpool_limits(1),
    "threadpool_limits(1, openmp)": lambda: threadpoolctl.threadpool_limits(1, user_api="openmp"),
    "threadpool_limits({openmp: 1})": lambda: threadpoolctl.threadpool_limits({"openmp": 1}),
    "controller.limit(1)": lambda: threadpoolctl.ThreadpoolController().limit(limits=1),
    "controller.select(fastnn).limit(1)":
        lambda: threadpoolctl.ThreadpoolController().select(internal_api="fastnn").limit(limits=1),
}


@pytest.mark.parametrize("how", list(LIMITERS))
def test_a_limit_caps_the_calling_thread_only_and_is_restored(two_threads, how):
    with LIMITERS[how]():
        assert fastnn.get_num_threads() == 1 and ext.get_thread_limit() == 1
        assert _in_another_thread(fastnn.get_num_threads) == 2
    assert fastnn.get_num_threads() == 2 and _no_cap_left()


def test_a_limit_as_a_decorator(two_threads):
    @threadpoolctl.threadpool_limits.wrap(limits=1, user_api="openmp")
    def count():
        return fastnn.get_num_threads()

    assert count() == 1 and fastnn.get_num_threads() == 2 and _no_cap_left()


def test_a_limit_of_blas_only_leaves_fastnn_alone(two_threads):
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert fastnn.get_num_threads() == 2


def test_limits_nest_with_thread_limit_and_set_as_openmp_does(two_threads):
    with fastnn.thread_limit(1):
        with threadpoolctl.threadpool_limits(2):  # threadpoolctl sets, as omp_set_num_threads does
            assert fastnn.get_num_threads() == 2
        assert fastnn.get_num_threads() == 1 and ext.get_thread_limit() == 1
        with threadpoolctl.threadpool_limits(0):  # below 1 counts as 1, as in OpenMP
            assert fastnn.get_num_threads() == 1
    assert _no_cap_left()


def test_an_estimator_fit_inside_a_limit_runs_on_one_thread(two_threads):
    pytest.importorskip("sklearn")
    from sklearn.exceptions import ConvergenceWarning

    seen = []

    class Spy(fastnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(fastnn.get_num_threads())

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
    est = fastnn.MLPClassifier((5,), max_iter=2, random_state=0, callbacks=[Spy()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with threadpoolctl.threadpool_limits(1):
            est.fit(X, y)
        est.fit(X, y)
    assert seen == [1, 1, 2, 2]


def test_set_num_threads_still_sets_the_count_under_no_limit(two_threads):
    ext.set_num_threads(1)
    (entry,) = _fastnn_entries()
    assert entry["num_threads"] == 1 == fastnn.get_num_threads()
    with threadpoolctl.threadpool_limits(2):  # at or above the count: no cap, the count rules
        assert fastnn.get_num_threads() == 1 and _no_cap_left()

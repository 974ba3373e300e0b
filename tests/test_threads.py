"""Thread counts: fastnn.set_num_threads (process-wide) and fastnn.thread_limit (the calling
thread's own cap, what the estimators' n_threads uses)."""
import threading

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

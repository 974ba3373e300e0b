"""What the installed scikit-learn's own MLP can be compared on.

fastnn's MLPClassifier and MLPRegressor follow scikit-learn 1.9 whichever scikit-learn (1.6 at
least) is installed. Python 3.9 gets 1.6.1 at most and Python 3.10 1.7.2, which lack some of it.
A comparison with scikit-learn's own estimator is made on what the installed one has: a
comparison of something it lacks is skipped, naming the installed version and the missing part
(the whole test: fastnn's side of it too), and the rest runs. fastnn's own behaviour on an older
scikit-learn is tested where it can differ (tests/test_neural_network.py: the loss check, the
version floor; tests/test_sklearn_interop.py: to_sklearn of a poisson model).

Each capability is read from the installed scikit-learn itself (its signatures, or one tiny fit),
never from a version table.
"""
import inspect
import warnings

import numpy as np
import pytest
import sklearn
from sklearn import neural_network as skn

VERSION = sklearn.__version__

# MLPClassifier/MLPRegressor.fit(..., sample_weight) and MLPRegressor(loss=...): scikit-learn 1.7
HAS_SAMPLE_WEIGHT = "sample_weight" in inspect.signature(skn.MLPClassifier.fit).parameters
HAS_LOSS = "loss" in inspect.signature(skn.MLPRegressor).parameters


def _string_labels_with_early_stopping():
    """scikit-learn before 1.9 (1.6.1, 1.7.2 and 1.8.0 here): its own MLPClassifier fails early
    stopping on string labels (its validation score calls np.isnan on the predicted labels). True
    where it works."""
    X = np.arange(20.0).reshape(10, 2)
    y = np.array(["a", "b"] * 5)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            skn.MLPClassifier((2,), early_stopping=True, validation_fraction=0.2, max_iter=1,
                              random_state=0).fit(X, y)
    except TypeError:
        return False
    return True


HAS_STRING_EARLY_STOPPING = _string_labels_with_early_stopping()


def is_sklearns(cls):
    return cls.__module__.split(".")[0] == "sklearn"


def skip(what):
    pytest.skip(f"scikit-learn {VERSION}'s own MLP {what}; fastnn's follows scikit-learn 1.9")


def make(cls, **params):
    """cls(**params). For scikit-learn's class without a loss parameter, loss='squared_error' (what
    it always does) is left out and any other loss skips the test."""
    if is_sklearns(cls) and "loss" in params and not HAS_LOSS:
        if params["loss"] != "squared_error":
            skip(f"has no loss parameter (loss={params['loss']!r})")
        params = {k: v for k, v in params.items() if k != "loss"}
    return cls(**params)


def weights(cls, sample_weight):
    """fit's keyword arguments for sample_weight: none for None; skips the test where it is
    scikit-learn's fit and that takes no sample_weight."""
    if sample_weight is None:
        return {}
    if is_sklearns(cls) and not HAS_SAMPLE_WEIGHT:
        skip("fit takes no sample_weight")
    return {"sample_weight": sample_weight}


def need_string_early_stopping():
    if not HAS_STRING_EARLY_STOPPING:
        skip("fails early stopping on string labels (np.isnan of the predicted labels)")

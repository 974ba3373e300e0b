"""The neural-network API as a specification: configs round-trip, models pickle and deep-copy into
exact twins, callbacks follow Keras's contract, one record per loss and activation, and the
defects a hostile tester found stay fixed (each test names the defect it guards)."""
import copy
import json
import importlib.util
import os
import pickle
import threading
import warnings

import numpy as np
import pytest

import fastnn
from fastnn import ops
from fastnn._engine import activations as act_registry, losses as loss_registry
from fastnn._engine.codes import CTR_SAMPLES, CTR_STEP
from conftest import outcome_in_thread


def blobs(n=240, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 4
    y = rng.integers(0, k, n)
    return (centers[y] + rng.standard_normal((n, d))).astype(np.float32), y


def mlp(seed=0, bn=True, k=3):
    layers = [fastnn.Dense(16, activation="relu")]
    if bn:
        layers += [fastnn.BatchNorm(momentum=0.2), fastnn.Dropout(0.2)]
    return fastnn.Sequential(layers + [fastnn.Dense(k)], seed=seed).compile("adam", "cross_entropy")


# -- configs -------------------------------------------------------------------------------------
CONFIGURABLES = [
    fastnn.Dense(7), fastnn.Dense(3, activation="logistic", kernel_initializer="he_uniform", alpha=0.2),
    fastnn.Activation("tanh"), fastnn.Dropout(0.3), fastnn.BatchNorm(momentum=0.3, eps=1e-3),
    fastnn.SGD(), fastnn.SGD(lr=0.2, momentum=0.5, nesterov=True, l2=1e-3, l1=1e-4, weight_decay=0.1,
                             schedule=fastnn.StepDecay(3, 0.5)),
    fastnn.Adam(lr=2e-3, beta1=0.8, beta2=0.99, eps=1e-7, schedule=fastnn.CosineDecay(1e-4, 100)),
    fastnn.AdamW(weight_decay=0.05, schedule="exponential"), fastnn.RMSprop(rho=0.95),
    fastnn.Constant(), fastnn.ExponentialDecay(0.9), fastnn.InvScaling(0.25),
    fastnn.Adaptive(factor=4, tol=1e-3, patience=3),
    fastnn.EarlyStopping(monitor="loss", min_delta=0.1, patience=3, restore_best_weights=True),
    fastnn.ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=2, cooldown=1, min_lr=1e-5),
    fastnn.TerminateOnNaN(),
]


@pytest.mark.parametrize("obj", CONFIGURABLES, ids=lambda o: type(o).__name__)
def test_from_config_of_get_config_round_trips_every_constructor_argument(obj):
    cfg = obj.get_config()
    assert json.loads(json.dumps(cfg)) == cfg  # plain data: a model file can carry it
    twin = type(obj).from_config(cfg)
    assert type(twin) is type(obj) and twin.get_config() == cfg
    import inspect
    assert list(cfg) == [p for p in inspect.signature(type(obj).__init__).parameters if p != "self"]


def test_sequential_config_round_trips_and_rebuilds_the_same_model():
    m = fastnn.Sequential([fastnn.Dense(8, activation="tanh"), fastnn.BatchNorm(), fastnn.Dense(2)],
                          dtype="float64", seed=7)
    m.compile(fastnn.RMSprop(lr=0.01), loss="mse")
    cfg, ccfg = m.get_config(), m.get_compile_config()
    assert json.loads(json.dumps([cfg, ccfg])) == [cfg, ccfg]
    twin = fastnn.Sequential.from_config(cfg).compile_from_config(ccfg)
    assert twin.get_config() == cfg and twin.get_compile_config() == ccfg
    m.build(5), twin.build(5)
    for a, b in zip(m.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_from_config_only_builds_fastnn_classes_and_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown fastnn class 'os.system'"):
        fastnn.Sequential.from_config({"layers": [{"class_name": "os.system", "config": {}}]})
    with pytest.raises(ValueError, match="unknown keys"):
        fastnn.Dense.from_config({"units": 3, "evil": 1})


# -- pickling and deep copies ----------------------------------------------------------------------
OPTIMIZERS = {
    "sgd-momentum": lambda: fastnn.SGD(0.05, momentum=0.9, l2=1e-3),
    "adam": lambda: fastnn.Adam(3e-3, weight_decay=1e-3),
    "rmsprop": lambda: fastnn.RMSprop(1e-3),
    "sgd-adaptive": lambda: fastnn.SGD(0.1, schedule=fastnn.Adaptive(tol=10.0, patience=1)),
}


@pytest.mark.parametrize("clone", ["pickle", "deepcopy"])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_a_copy_predicts_bit_identically_and_trains_on_the_same_trajectory(backend, opt, clone):
    X, y = blobs()
    m = mlp(seed=4).compile(OPTIMIZERS[opt](), "cross_entropy")
    m.fit(X, y, epochs=2, batch_size=32)
    c = pickle.loads(pickle.dumps(m)) if clone == "pickle" else copy.deepcopy(m)
    np.testing.assert_array_equal(c.predict_proba(X), m.predict_proba(X))
    assert c.history.history == m.history.history and c.epochs_trained == m.epochs_trained
    assert c.lr_scale == m.lr_scale and c.loss == m.loss
    # the copy owns fresh buffers: its layers are views of ITS buffer, not the original's
    assert np.shares_memory(c.layers[0].kernel, c.params)
    assert not np.shares_memory(c.params, m.params)
    for model in (m, c):
        model.fit(X, y, epochs=2, batch_size=32)
        model.partial_fit(X[:50], y[:50], batch_size=16)
    np.testing.assert_array_equal(c.params, m.params)
    np.testing.assert_array_equal(c.slots, m.slots)
    np.testing.assert_array_equal(c.state, m.state)
    np.testing.assert_array_equal(c.counters, m.counters)
    drop_time = lambda h: {k: v for k, v in h.history.items() if k != "time"}  # noqa: E731
    assert drop_time(c.history) == drop_time(m.history) and c.lr_scale == m.lr_scale


def test_an_unbuilt_model_and_an_uncompiled_one_copy_too():
    m = fastnn.Sequential([fastnn.Dense(4), fastnn.Dense(3)])
    c = copy.deepcopy(m)
    assert not c.built and c.optimizer is None and len(c.layers) == len(m.layers)
    assert all(a is not b for a, b in zip(c.layers, m.layers))
    X, y = blobs()
    c.compile("sgd", "cross_entropy").fit(X, y)  # the copy's layers belong to it
    with pytest.raises(ValueError, match="belongs to another model"):
        fastnn.Sequential([c.layers[0]])


def test_training_needs_compile_as_in_keras_while_predict_does_not():
    """Defect: fit on a model never compiled trained with Adam and a loss guessed from the last
    activation: integer labels into Dense(1) became a regression, into Dense(3) a misleading
    'y has 1 outputs' error."""
    X, y = blobs()
    for built in (False, True):
        m = fastnn.Sequential([fastnn.Dense(8, activation="relu"), fastnn.Dense(3)])
        if built:
            m.build(X.shape[1])
            assert len(m.predict(X)) == len(X)  # inference needs no compile
        for call in (lambda: m.fit(X, y), lambda: m.partial_fit(X, y), lambda: m.train_on_batch(X, y)):
            with pytest.raises(RuntimeError, match=r"compile the model before (fit|partial_fit|train_on_batch): "
                                                   r"model.compile\(optimizer, loss\)"):
                call()
        assert m.epochs_trained == 0 and (not built or int(m.counters[CTR_STEP]) == 0)
        m.compile("sgd", loss="cross_entropy").fit(X, y)
        assert m.epochs_trained == 1 and m.loss == "cross_entropy"
    # copies keep it; a pickle from before the flag counts as compiled when it has an optimizer
    c = copy.deepcopy(fastnn.Sequential([fastnn.Dense(3)]).build(4))
    with pytest.raises(RuntimeError, match="compile the model before fit"):
        c.fit(X[:, :4], y)
    state = m.__getstate__()
    del state["_compiled"]
    old = fastnn.Sequential.__new__(fastnn.Sequential)
    old.__setstate__(state)
    old.fit(X, y)
    assert old.epochs_trained == 2


def test_a_built_but_never_compiled_model_stays_so_through_a_file_and_a_pickle(tmp_path):
    X, y = blobs()
    m = fastnn.Sequential([fastnn.Dense(3)]).build(X.shape[1])
    m.save(tmp_path / "u.safetensors")
    for other in (fastnn.load(tmp_path / "u.safetensors"), pickle.loads(pickle.dumps(m))):
        np.testing.assert_array_equal(other.predict(X), m.predict(X))
        with pytest.raises(RuntimeError, match="compile the model before fit"):
            other.fit(X, y)
    from fastnn.files import safetensors
    _, meta = safetensors.read_file(tmp_path / "u.safetensors")
    assert json.loads(meta["training"])["compiled"] is False
    m.compile("sgd", loss="cross_entropy").save(tmp_path / "c.safetensors")  # compiled: no such key
    _, meta = safetensors.read_file(tmp_path / "c.safetensors")
    assert "compiled" not in json.loads(meta["training"])
    fastnn.load(tmp_path / "c.safetensors").fit(X, y)
    # hand-made pickle states: compiled without an optimizer, an optimizer without a loss
    state = fastnn.Sequential([fastnn.Dense(3)]).__getstate__()
    state["_compiled"] = True
    odd = fastnn.Sequential.__new__(fastnn.Sequential)
    odd.__setstate__(state)
    with pytest.raises(RuntimeError, match="compile the model before fit"):
        odd.fit(X, y)
    state = mlp().__getstate__()
    state["_loss"] = None
    with pytest.raises(ValueError, match="an optimizer without a loss"):
        fastnn.Sequential.__new__(fastnn.Sequential).__setstate__(state)


def test_a_pickled_schedule_callback_must_be_the_one_the_optimizers_schedule_makes():
    """fit calls the model's schedule callback (Adaptive's plateau rule): a pickle restores its
    state (best, wait, cooldown) into one made afresh from the optimizer, and refuses any other
    object, another callback, another configuration or state out of range."""
    X, y = blobs()
    m = fastnn.Sequential([fastnn.Dense(3)], seed=0).compile(fastnn.SGD(0.1, schedule="adaptive"), "cross_entropy")
    m.fit(X, y, epochs=3)
    back = pickle.loads(pickle.dumps(m))
    assert back._schedule_callback is not m._schedule_callback
    assert back._schedule_callback.get_state() == m._schedule_callback.get_state() != \
        m.optimizer.schedule.plateau_callback().get_state()
    state = m.__getstate__()
    wrong_config = m.optimizer.schedule.plateau_callback()
    wrong_config.patience += 1
    wrong_state = copy.deepcopy(state["_schedule_callback"])
    wrong_state.wait = -1
    for bad, match in ((object(), "is not the one"), (fastnn.EarlyStopping(), "is not the one"),
                       (wrong_config, "is not the one"), (wrong_state, "'wait' parameter")):
        with pytest.raises(ValueError, match=match):
            fastnn.Sequential.__new__(fastnn.Sequential).__setstate__({**state, "_schedule_callback": bad})
    plain = mlp().__getstate__()  # a constant rate makes no callback
    with pytest.raises(ValueError, match="does not make"):
        fastnn.Sequential.__new__(fastnn.Sequential).__setstate__(
            {**plain, "_schedule_callback": fastnn.ReduceLROnPlateau()})


def test_keras_habits_metrics_batch_size_none_and_patience_zero():
    X, y = blobs()
    m = fastnn.Sequential([fastnn.Dense(8, activation="relu"), fastnn.Dense(3)], seed=0)
    m.compile("adam", loss="cross_entropy", metrics=["accuracy"])  # Keras's; reported anyway
    assert m.optimizer.lr == 1e-3 and m.loss == "cross_entropy"
    for bad, exc, match in ((["mae"], ValueError, "metric 'mae' is not available"),
                            ("accuracy", TypeError, "metrics must be a list of names"),
                            ([np.array(["accuracy", "x"])], ValueError, r"metric array\(\['accuracy', 'x'\]")):
        with pytest.raises(exc, match=match):
            m.compile("adam", loss="cross_entropy", metrics=bad)
    with pytest.raises(ValueError, match="metric 'accuracy' needs a classification loss; mse reports its loss only"):
        m.compile("adam", loss="mse", metrics=["accuracy"])
    assert m.loss == "cross_entropy"  # a refused compile changes nothing
    # batch_size=None is Keras's 32: the same steps as batch_size=32
    a, b = copy.deepcopy(m), copy.deepcopy(m)
    a.fit(X, y, batch_size=None)
    b.fit(X, y, batch_size=32)
    assert int(a.counters[CTR_STEP]) == int(b.counters[CTR_STEP]) == -(-len(X) // 32)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    # ReduceLROnPlateau(patience=0) scales the rate at the first epoch that does not improve
    logs = [{"loss": v} for v in (1.0, 0.9, 0.95, 0.8)]
    cb = fastnn.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0)
    cb.set_model(m)
    scales = []
    for e, lg in enumerate(logs):
        cb.on_epoch_end(e, lg)
        scales.append(m.lr_scale)
    assert scales == [1.0, 1.0, 0.5, 0.5]


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
def test_one_callback_is_not_shared_by_two_running_fits():
    """Defect: two estimators given one EarlyStopping, fitted in two threads, overwrote each
    other's model, best value and wait count: their n_iter_ changed from run to run."""
    X, y = blobs()
    shared = fastnn.EarlyStopping(monitor="loss", patience=100)
    seen = []

    class StartOther(fastnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                seen.append(outcome_in_thread(lambda: mlp(bn=False).fit(X, y, callbacks=[shared])))

    mlp(bn=False).fit(X, y, epochs=2, callbacks=[shared, StartOther()])
    assert seen == ["this EarlyStopping is in use by another running fit: a callback keeps one fit's "
                    "state; give each fit its own (copy.deepcopy(callback))"]
    mlp(bn=False).fit(X, y, callbacks=[shared])  # free again once that fit is over
    with pytest.raises(RuntimeError, match="in use by another running fit"):
        class Nested(fastnn.Callback):
            def on_epoch_end(self, epoch, logs=None):
                mlp(bn=False).fit(X, y, callbacks=[shared])
        mlp(bn=False).fit(X, y, callbacks=[shared, Nested()])
    mlp(bn=False).fit(X, y, callbacks=[shared])  # released after that fit's error too
    # a refused fit changes nothing: the Sequential's history, the estimator's model
    from fastnn.nn.callbacks import in_use
    m = mlp(bn=False)
    m.fit(X, y, epochs=2)
    have_sklearn = importlib.util.find_spec("sklearn") is not None  # the estimator's part needs it
    est = fastnn.MLPClassifier((5,), max_iter=5, random_state=0).fit(X, y) if have_sklearn else None
    before = [w.copy() for w in est.coefs_] if have_sklearn else []
    with in_use([shared]):  # as another thread's running fit holds it
        with pytest.raises(RuntimeError, match="in use by another running fit"):
            m.fit(X, y, callbacks=[shared])
        if have_sklearn:
            with pytest.raises(RuntimeError, match="in use by another running fit"):
                est.set_params(callbacks=[shared]).fit(X, y)
    assert m.history.epoch == [0, 1]
    if have_sklearn:
        assert est.n_iter_ == 5
        for a, b in zip(est.coefs_, before):
            np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_a_child_forked_during_a_fit_may_use_that_fits_callbacks():
    X, y = blobs()
    shared = fastnn.EarlyStopping(monitor="loss", patience=100)
    started, release = threading.Event(), threading.Event()

    class Hold(fastnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            started.set()
            release.wait(30)

    t = threading.Thread(target=lambda: mlp(bn=False).fit(X, y, callbacks=[shared, Hold()]))
    t.start()
    started.wait(30)
    pid = os.fork()
    if pid == 0:  # the child: the parent's fit never ends here
        try:
            mlp(bn=False).fit(X, y, callbacks=[shared])
            os._exit(0)
        except BaseException:
            os._exit(1)
    release.set()
    t.join()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


def test_deep_copy_of_a_layer_alone_is_a_fresh_unbound_layer():
    m = mlp().build(6)
    d = copy.deepcopy(m.layers[0])
    assert d.kernel is None and d.get_config() == m.layers[0].get_config()
    fastnn.Sequential([d, fastnn.Dense(3)]).build(4)  # free to join another model


# -- one record per concept ------------------------------------------------------------------------
@pytest.mark.parametrize("alias", sorted(loss_registry.ALIASES))
def test_every_loss_alias_means_the_same_everywhere(alias):
    rec = loss_registry.get(alias)
    m = fastnn.Sequential([fastnn.Dense(3)]).compile("sgd", loss=alias)
    assert m.loss == rec.name
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((5, 3))
    y = rng.integers(0, 3, 5) if rec.targets == "labels" else rng.random((5, 3))
    v1, g1 = ops.loss(alias, Z, y)
    v2, g2 = ops.loss(rec.name, Z, y)
    assert v1 == v2 and np.array_equal(g1, g2)
    # the engine code, the link and the rules are the record's
    m.build(4)
    assert m._built.plan.loss_code == rec.code


@pytest.mark.parametrize("alias", [a for a in act_registry.ALIASES if a is not None])
def test_every_activation_alias_means_the_same_everywhere(alias):
    rec = act_registry.get(alias)
    assert fastnn.Dense(2, activation=alias).activation == rec.name
    assert fastnn.Activation(alias).activation == rec.name
    X = np.random.default_rng(0).standard_normal((4, 3))
    np.testing.assert_array_equal(ops.activation(alias, X), ops.activation(rec.name, X))


def test_binary_decision_threshold_is_the_same_in_predict_evaluate_and_the_engine(backend):
    # all-zero weights: every output is exactly 0, sigmoid 0.5, which is NOT a positive
    # prediction (scikit-learn's rule: probability > 0.5)
    X = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
    T = np.ones((40, 2), np.float32)
    m = fastnn.Sequential([fastnn.Dense(2)]).compile(fastnn.SGD(1e-30), "binary_crossentropy").build(4)
    m.set_weights([np.zeros((4, 2)), np.zeros(2)])
    assert (m.predict(X) == 0).all()
    assert m.evaluate(X, T)["accuracy"] == 0.0
    h = m.fit(X, T, epochs=1, batch_size=40, shuffle=False)  # the engine's count, before the step
    assert h["accuracy"][0] == 0.0


# -- callbacks ----------------------------------------------------------------------------------------
class Recorder(fastnn.Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin", self.params["epochs"], self.params["steps"]))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, sorted(logs)))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))


def test_callback_hooks_run_in_keras_order_with_params_and_logs():
    X, y = blobs(n=100)
    r = Recorder()
    m = mlp()
    m.fit(X, y, epochs=2, batch_size=32, validation_split=0.2, callbacks=[r])
    keys = ["accuracy", "loss", "lr", "time", "val_accuracy", "val_loss"]
    assert r.calls == [("train_begin", 2, 3), ("epoch_begin", 0), ("epoch_end", 0, keys),
                       ("epoch_begin", 1), ("epoch_end", 1, keys), ("train_end",)]
    m.fit(X, y, epochs=1, callbacks=[r])  # epochs keep counting across fits
    assert ("epoch_begin", 2) in r.calls


def test_validation_split_holds_out_the_last_samples_before_shuffling():
    X, y = blobs(n=100)
    m = mlp(bn=False, seed=2)
    h = m.fit(X, y, epochs=1, validation_split=0.25)
    twin = mlp(bn=False, seed=2)
    twin.fit(X[:75], y[:75], epochs=1)
    np.testing.assert_array_equal(m.params, twin.params)
    assert h["val_loss"][0] == pytest.approx(twin.evaluate(X[75:], y[75:])["loss"], rel=1e-6)
    with pytest.raises(ValueError, match="not both"):
        m.fit(X, y, validation_split=0.2, validation_data=(X, y))
    with pytest.raises(ValueError, match="validation_split"):
        m.fit(X[:3], y[:3], validation_split=0.2)


def test_early_stopping_waits_patience_epochs_and_restores_the_best_weights():
    X, y = blobs()

    class Scripted(fastnn.Callback):  # feeds EarlyStopping a known curve through the logs
        curve = [1.0, 0.5, 0.6, 0.55, 0.7, 0.4, 0.3]

        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = self.curve[epoch]
            if epoch == 1:
                self.best = self.model.get_weights()

    s = Scripted()
    es = fastnn.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    m = mlp(bn=False)
    h = m.fit(X, y, epochs=7, callbacks=[s, es])
    # best at epoch 1 (0.5); epochs 2, 3, 4 fail to beat it: stop after epoch 4
    assert h.epoch == [0, 1, 2, 3, 4] and h.stopped_early and es.stopped_epoch == 4 and es.best_epoch == 1
    for a, b in zip(m.get_weights(), s.best):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_min_delta_counts_small_gains_as_no_gain():
    X, y = blobs()

    class Scripted(fastnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["loss"] = 1.0 - 0.01 * epoch  # improves by 0.01 a step: less than min_delta

    es = fastnn.EarlyStopping(monitor="loss", min_delta=0.05, patience=2)
    h = mlp(bn=False).fit(X, y, epochs=10, callbacks=[Scripted(), es])
    assert h.epoch == [0, 1, 2]


def test_reduce_lr_on_plateau_scales_the_rate_after_patience_flat_epochs():
    X, y = blobs()

    class Flat(fastnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = [1.0, 0.9, 0.95, 0.92, 0.91, 0.5, 0.6, 0.7][epoch]

    m = mlp(bn=False).compile(fastnn.SGD(0.1), "cross_entropy")
    rl = fastnn.ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.0, min_lr=0.02)
    h = m.fit(X, y, epochs=8, callbacks=[Flat(), rl])
    # epoch 2, 3 fail to beat 0.9 -> halve after epoch 3; 4 fails, 5 improves; 6, 7 fail -> halve
    # again, but not below min_lr (0.02 = 0.2 x 0.1)
    np.testing.assert_allclose(h["lr"], [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05])
    assert m.lr_scale == pytest.approx(0.25)
    m.fit(X, y, epochs=1)
    assert m.history["lr"][0] == pytest.approx(0.025)  # the scale carries over to later fits


def test_adaptive_schedule_divides_by_factor_after_patience_flat_epochs(backend):
    # scikit-learn's rule, written out: an epoch is flat when loss > best - tol (best: the lowest
    # loss so far, +inf before the first epoch); after `patience` flat epochs in a row lr /= factor
    # and the count restarts. tol is huge, so every epoch after the first is flat.
    X, y = blobs()
    m = mlp(bn=False).compile(fastnn.SGD(0.01, schedule=fastnn.Adaptive(factor=4, tol=100.0, patience=2)),
                              "cross_entropy")
    h = m.fit(X, y, epochs=7)
    expect, lr, flat = [], 0.01, 0
    for e in range(7):
        expect.append(lr)
        flat += e > 0
        if flat >= 2:
            lr, flat = lr / 4, 0
    np.testing.assert_allclose(h["lr"], expect, rtol=1e-12)


def test_terminate_on_nan_stops_cleanly_instead_of_raising(backend):
    X, y = blobs()
    X = X * 1e18
    m = mlp(bn=False).compile(fastnn.SGD(1e3), "cross_entropy")
    with pytest.raises(fastnn.NonFiniteError):
        m.fit(X, y, epochs=3)
    m2 = mlp(bn=False).compile(fastnn.SGD(1e3), "cross_entropy")
    h = m2.fit(X, y, epochs=3, callbacks=[fastnn.TerminateOnNaN()])
    assert h.terminated_on_nan and np.isfinite(m2.params).all()


# -- hostile-test regressions ----------------------------------------------------------------------------
def test_setstate_on_a_model_in_use_is_refused_and_leaves_its_fit_running():
    """The hostile tester called model.__setstate__ from a callback: the model's lock was swapped and
    the outer fit ended with "cannot release un-acquired lock"."""
    X, y = blobs()
    m = mlp(bn=False)
    m.fit(X, y)
    state = m.__getstate__()
    seen = []

    class Swap(fastnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            with pytest.raises(RuntimeError, match="new, empty object"):
                self.model.__setstate__(state)
            seen.append(epoch)

    m.fit(X, y, epochs=2, callbacks=[Swap()])
    assert seen == [1, 2] and m.epochs_trained == 3
    fresh = fastnn.Sequential.__new__(fastnn.Sequential)
    fresh.__setstate__(state)  # what pickle does
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(m)).predict(X), m.predict(X))


def test_a_negative_running_variance_written_through_a_view_is_refused_by_save_and_copy(tmp_path):
    """load and pickle.loads refuse a negative running variance, which set_weights refuses too; one
    written through the layer's array view was saved and pickled, then could not be loaded."""
    X, y = blobs()
    m = mlp(bn=True)
    m.fit(X, y)
    path = tmp_path / "m.safetensors"
    m.save(path)
    before = path.read_bytes()
    m.layers[1].running_var[2] = -1.0
    for action in (lambda: m.save(path), lambda: pickle.dumps(m), lambda: copy.deepcopy(m)):
        with pytest.raises(ValueError, match="cannot (save|copy) the model: layer 1: BatchNorm.running_var must be >= 0"):
            action()
    assert path.read_bytes() == before
    m.layers[1].running_var[2] = 0.0  # a variance of 0 is one
    m.save(path)
    np.testing.assert_array_equal(fastnn.load(path).predict_proba(X), m.predict_proba(X))


def test_a_whole_gradient_function_refuses_a_recompiled_model_and_wrong_buffers():
    """After compile(loss=...) the function ran on targets checked for the old loss ("invalid
    argument", or mse targets taken as binary ones); a wrong buffer got Cython's "No matching
    signature found"."""
    X, y = blobs()
    m = fastnn.Sequential([fastnn.Dense(8, activation="relu"), fastnn.Dense(3)]).compile("adam", "mse")
    m.build(X.shape[1])
    T = np.eye(3, dtype=np.float32)[y]
    f = m.whole_gradient(X, T)
    g = np.empty(m.n_params, np.float32)
    assert np.isfinite(f(g)) and g.any()
    for bad, what in ((np.empty(m.n_params, np.float64), "float64 array"),
                      (np.empty(m.n_params + 1, np.float32), f"shape \\({m.n_params + 1},\\)"),
                      (np.empty(2 * m.n_params, np.float32)[::2], "not C-contiguous"),
                      (np.frombuffer(bytes(4 * m.n_params), np.float32), "read-only"),
                      (list(g), "a list")):
        with pytest.raises(ValueError, match=f"grads must be .* got .*{what}"):
            f(bad)
    m.compile("adam", "binary_crossentropy")
    with pytest.raises(RuntimeError, match="call whole_gradient again"):
        f(g)
    assert np.isfinite(m.whole_gradient(X, T)(g))


@pytest.mark.parametrize("settings", [
    dict(opt=fastnn.SGD(0.1, l2=3.5e38), name="l2"),                          # beyond float32 itself
    dict(opt=fastnn.SGD(0.1, l1=1e39), name="l1"),
    dict(opt=fastnn.AdamW(lr=1e20, weight_decay=1e20), name="lr x weight_decay"),
    dict(opt=fastnn.SGD(1e20, l2=1e30), name="lr x l2"),                      # each finite, the product not
    dict(opt=fastnn.RMSprop(1e20, l1=1e30), name="lr x l1"),
])
def test_an_update_whose_rate_and_penalty_overflow_the_dtype_is_refused_before_any_change(backend, settings):
    """The hostile tester's finding: in float32, train_on_batch returned a finite loss and left
    infinite weights, and a batched partial_fit wrote them and then blamed the user. Every update
    of an ordinary weight overflows with these settings: fit, partial_fit and train_on_batch refuse
    them, naming the term, and change nothing. float64 holds them."""
    X, y = blobs()
    m = mlp(bn=False).compile(settings["opt"], "cross_entropy").build(X.shape[1])
    before = [a.copy() for a in (m._built.params, m._built.slots, m._built.counters)]
    for call in (lambda: m.fit(X, y), lambda: m.partial_fit(X, y, batch_size=32),
                 lambda: m.train_on_batch(X[:8], y[:8])):
        with pytest.raises(ValueError, match=f": {settings['name']} is .* beyond the largest float32"):
            call()
        for a, b in zip(before, (m._built.params, m._built.slots, m._built.counters)):
            np.testing.assert_array_equal(a, b)
    m64 = fastnn.Sequential([fastnn.Dense(16, activation="relu"), fastnn.Dense(3)], dtype="float64")
    m64.compile(settings["opt"], "cross_entropy").build(X.shape[1])
    m64.train_on_batch(X[:8], y[:8])  # float64 holds these settings: no error


@pytest.mark.parametrize("case", ["l2", "weight_decay", "adam-v", "rmsprop-s", "momentum"])
def test_partial_fit_reports_an_update_that_overflows_where_no_setting_does(backend, case):
    """The hostile tester's finding: every setting is finite, and so is each product the settings
    check looks at, but an ordinary weight times l2 (or times 1 - lr wd), or a squared gradient of
    1e19 in Adam's v or RMSprop's s, overflows float32. train_on_batch returned a finite loss and
    left NaN or infinity behind; a batched partial_fit blamed the user for it on its next call.
    Now the call itself says so: the update was applied, the counters were not advanced."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 4)).astype(np.float32), rng.integers(0, 3, 16)
    loss, big = "cross_entropy", False
    opt = {"l2": fastnn.SGD(1e-3, l2=2e38), "weight_decay": fastnn.AdamW(1.0, weight_decay=2e38),
           "adam-v": fastnn.Adam(1e-3), "rmsprop-s": fastnn.RMSprop(1e-3),
           "momentum": fastnn.SGD(1e30, momentum=0.9)}[case]
    if case in ("adam-v", "rmsprop-s", "momentum"):  # gradients of about 1e21: finite, their squares not
        X, big = X * np.float32(1e22), True
    for name, call in (("train_on_batch", lambda m: m.train_on_batch(X, y)),
                       ("partial_fit", lambda m: m.partial_fit(X, y, batch_size=8))):
        m = fastnn.Sequential([fastnn.Dense(5, activation="relu"), fastnn.Dense(3)], seed=1)
        m.compile(opt, loss).build(4)
        if not big:
            w = m.get_weights()
            w[0][0, 0] = 2.0
            m.set_weights(w)
        counters = m._built.counters.copy()
        with pytest.raises(fastnn.NonFiniteError,
                           match=f"batch 0 of this {name} .* left NaN or infinite values .* It was applied.*; {name} keeps"):
            call(m)
        assert not (np.isfinite(m._built.params).all() and np.isfinite(m._built.slots).all())
        np.testing.assert_array_equal(m._built.counters, counters)


def test_partial_fit_leaves_alone_a_parameter_that_plain_sgd_does_not_change(backend):
    """Plain SGD with g = 0 leaves a parameter as it is (the online step does not even read a row
    whose inputs are all 0): an infinity written there by hand is not this update's doing and is
    not reported, on both backends alike. A step that changes it (momentum, Adam) is. Here: the
    bias of a hidden unit held dead by it (relu of -inf), whose gradient is 0."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 4)).astype(np.float32), rng.integers(0, 3, 16)
    for opt, batch, reported in ((fastnn.SGD(0.1), 1, False), (fastnn.SGD(0.1), None, False),
                                 (fastnn.SGD(0.1, momentum=0.5), None, True), (fastnn.Adam(), 4, True),
                                 (fastnn.RMSprop(), 1, True)):
        m = fastnn.Sequential([fastnn.Dense(5, activation="relu"), fastnn.Dense(3)], seed=1)
        m.compile(opt, "cross_entropy").build(4)
        m.layers[0].bias[2] = -np.inf
        if reported:
            with pytest.raises(fastnn.NonFiniteError, match="left NaN or infinite values"):
                m.partial_fit(X, y, batch_size=batch)
        else:
            m.partial_fit(X, y, batch_size=batch)
            assert m.layers[0].bias[2] == -np.inf and np.isfinite(np.delete(m.params, m.n_params - 8 + 2)).all()


@pytest.mark.parametrize("dtype, setting", [("float32", {"momentum": 1e-50}), ("float32", {"momentum": 1e-40}),
                                            ("float32", {"l2": 1e-40}), ("float32", {"l1": 1e-45}),
                                            ("float64", {"momentum": 1e-310}), ("float64", {"l2": 1e-320})])
@pytest.mark.parametrize("batch", [1, None])
def test_a_momentum_or_penalty_below_the_smallest_normal_acts_as_0(backend, dtype, setting, batch):
    """The round-3 tester's finding: a momentum, l2 or l1 that is 0 in the dtype, or subnormal
    (which the compiled engine flushes to 0), made the compiled update plain SGD while the oracle
    kept a velocity or a penalty term: with an infinity written by hand where g = 0, status and
    counters differed. Now both take such a setting as 0. Expected: the model with the setting 0,
    bit for bit. Its plain step leaves alone, and does not report, the -inf bias and weight of a
    unit they hold dead (g = 0 there); a velocity of inf would make them NaN (0 x inf), and so
    would a penalty term on the weight."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 4)).astype(dtype), rng.integers(0, 3, 16)
    X[:, 0] = np.abs(X[:, 0]) + 0.5  # x0 x -inf is -inf in every row
    got = []
    for opt in (fastnn.SGD(0.1, **setting), fastnn.SGD(0.1)):
        m = fastnn.Sequential([fastnn.Dense(5, activation="relu"), fastnn.Dense(3)], dtype=dtype, seed=1)
        m.compile(opt, "cross_entropy").build(4)
        m.layers[0].bias[2] = m.layers[0].kernel[0, 2] = -np.inf
        m._built.slots[~np.isfinite(m.params)] = np.inf  # the velocity there, were there one
        m.partial_fit(X, y, batch_size=batch)  # no NonFiniteError: both are left as they were
        got.append((m.params.copy(), m._built.counters.copy()))
    np.testing.assert_array_equal(got[0][0], got[1][0])
    np.testing.assert_array_equal(got[0][1], got[1][1])


def test_a_weight_met_only_by_zero_inputs_is_not_read_by_a_forward_of_up_to_4_rows(backend):
    """Products of at most 4 rows skip a weight row whose input is 0, as a reference BLAS GEMV
    does: an infinity written there is not propagated (0 x inf would be NaN). The oracle did not
    skip, so predictions and plain-SGD partial_fit with such a weight differed between backends.
    Expected: what the model with that weight at 0 gives."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 4)).astype(np.float32), rng.integers(0, 3, 16)
    X[:, 0] = 0
    for batch in (1, 4):
        m = fastnn.Sequential([fastnn.Dense(5, activation="relu"), fastnn.Dense(3)], seed=1)
        m.compile(fastnn.SGD(0.1), "cross_entropy").build(4)
        zero = copy.deepcopy(m)
        m.layers[0].kernel[0, 2] = np.inf
        zero.layers[0].kernel[0, 2] = 0
        np.testing.assert_allclose(m.predict_proba(X[:batch]), zero.predict_proba(X[:batch]), rtol=1e-6)
        m.partial_fit(X, y, batch_size=batch)
        zero.partial_fit(X, y, batch_size=batch)
        assert m.layers[0].kernel[0, 2] == np.inf
        m.layers[0].kernel[0, 2] = 0
        np.testing.assert_allclose(m.params, zero.params, rtol=1e-5, atol=1e-7)


def test_a_refused_fit_keeps_the_history_and_calls_no_callback(backend):
    """The hostile tester's finding: a fit refused for its rate had already replaced model.history
    with an empty one and run on_train_begin and on_train_end."""
    X, y = blobs()
    m = mlp(bn=False)
    h = m.fit(X, y, epochs=3)
    seen = []

    class Watch(fastnn.Callback):
        def on_train_begin(self, logs=None):
            seen.append("begin")

    m.lr_scale = 1e42  # x Adam's 1e-3: beyond float32
    with pytest.raises(ValueError, match="epoch 3: the learning rate is"):
        m.fit(X, y, callbacks=[Watch()])
    assert m.history is h and len(h.epoch) == 3 and seen == []


@pytest.mark.parametrize("opt", [fastnn.Adam(1e-3, eps=1e-50), fastnn.RMSprop(1e-3, eps=1e-46),
                                 fastnn.AdamW(eps=1e-320), fastnn.Adam(1e-3, eps=1e-45),
                                 fastnn.RMSprop(eps=1e-39)])
def test_an_eps_that_is_zero_in_the_dtype_is_refused(backend, opt):
    """The hostile tester's finding: eps=1e-50 passed, became 0 in float32, and every weight with a
    zero gradient (a dead ReLU, a constant feature) became 0 / 0 = NaN, without an error."""
    X, y = blobs()
    X[:, 0] = 0
    m = fastnn.Sequential([fastnn.Dense(5, activation="relu"), fastnn.Dense(3)]).compile(opt, "cross_entropy")
    m.build(X.shape[1])
    w = m.get_weights()
    for call in (lambda: m.train_on_batch(X, y), lambda: m.partial_fit(X, y, batch_size=16), lambda: m.fit(X, y)):
        with pytest.raises(ValueError, match="eps is .* which is 0 in float32"):
            call()
    for a, b in zip(w, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    if opt.eps > 1e-300:  # float64 holds it (the round-3 tester: 1e-45 and 1e-39 are subnormal in float32)
        m64 = fastnn.Sequential([fastnn.Dense(5, activation="relu"), fastnn.Dense(3)], dtype="float64")
        m64.compile(opt, "cross_entropy").fit(X, y)
        assert np.isfinite(m64.params).all()


@pytest.mark.parametrize("n_batches", [1, 2])
def test_fit_rolls_back_an_epoch_whose_update_overflowed_even_in_its_last_batch(backend, n_batches):
    """A finite rate and gradient can still overflow the update (lr 1e30 x a gradient of 1e9).
    With one batch no later batch's loss meets the infinite weights: the epoch ended "ok" and the
    model kept them. With two, the second batch's loss was caught but the message said the model
    kept its last finite step, while it went back to the epoch's start. Now both restore the
    weights of the epoch's start and say so; TerminateOnNaN stops with them."""
    X, y = blobs(n=64)
    X = X * 1e9
    for callbacks in ([], [fastnn.TerminateOnNaN()]):
        m = mlp(bn=False).compile(fastnn.SGD(1e30), "cross_entropy").build(X.shape[1])
        m.lr_scale = 1e-30
        m.fit(X[:4] * 1e-9, y[:4], batch_size=4)  # one ordinary epoch first
        m.lr_scale = 1.0
        start = [a.copy() for a in (m._built.params, m._built.slots, m._built.counters)]
        if callbacks:
            h = m.fit(X, y, batch_size=64 // n_batches, callbacks=callbacks)
            assert h.terminated_on_nan
        else:
            with pytest.raises(fastnn.NonFiniteError,
                               match="an update in epoch 1 overflowed float32 .* weights it had at the start"):
                m.fit(X, y, batch_size=64 // n_batches)
        for a, b in zip(start, (m._built.params, m._built.slots, m._built.counters)):
            np.testing.assert_array_equal(a, b)
        assert m.epochs_trained == 1


def test_build_compile_and_fit_from_a_callback_raise_instead_of_corrupting_the_running_fit():
    X, y = blobs()
    m = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(3)])
    m.compile(fastnn.SGD(lr=1e-3), loss="cross_entropy")
    for action in (lambda: m.build(1), lambda: m.compile("sgd", loss="mse"),
                   lambda: m.fit(X, y), lambda: m.partial_fit(X, y), lambda: m.add(fastnn.Dense(2))):
        class Hostile(fastnn.Callback):
            def on_epoch_end(self, epoch, logs=None):
                action()

        with pytest.raises(RuntimeError, match="called from one of its callbacks|cannot add"):
            m.fit(X, y, epochs=2, batch_size=64, callbacks=[Hostile()])
        assert m.loss == "cross_entropy" and m.n_inputs == X.shape[1]
        assert set(len(v) for v in m.history.history.values()) <= {0, 1}
    # the model is still whole and usable
    m.fit(X, y, epochs=1)
    assert m.predict(X).shape == (len(X),)


def test_a_callback_may_read_predict_and_set_weights():
    X, y = blobs()
    m = mlp(bn=False)

    class Friendly(fastnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.set_weights(self.model.get_weights())
            self.p = self.model.predict(X)
            self.e = self.model.evaluate(X, y)
            self.c = copy.deepcopy(self.model)

    f = Friendly()
    m.fit(X, y, epochs=2, callbacks=[f])
    assert f.p.shape == (len(X),) and "accuracy" in f.e and f.c.built


def test_compile_from_another_thread_during_a_fit_is_refused():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((4000, 64)).astype(np.float32), rng.integers(0, 10, 4000)
    m = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(10)]).compile("sgd", "cross_entropy")
    m.build(64)
    errors, started = [], threading.Event()

    class Signal(fastnn.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            started.set()

    def other():
        started.wait(10)
        for call in (lambda: m.compile("adam"), lambda: m.build(3)):
            try:
                call()
            except RuntimeError as e:
                errors.append(str(e))

    t = threading.Thread(target=other)
    t.start()
    m.fit(X, y, epochs=3, batch_size=16, callbacks=[Signal()])
    t.join()
    assert len(errors) == 2 and all("another thread" in e for e in errors)
    assert type(m.optimizer).__name__ == "SGD"


def test_the_same_layer_twice_or_in_two_models_is_rejected():
    d = fastnn.Dense(8, activation="relu")
    with pytest.raises(ValueError, match="already belongs to this model"):
        fastnn.Sequential([d, d, fastnn.Dense(3)])
    d = fastnn.Dense(8)
    m1 = fastnn.Sequential([d])
    with pytest.raises(ValueError, match="already belongs to another model"):
        fastnn.Sequential([d])
    assert m1.layers == [d]


def test_compile_after_build_keeps_the_weights_and_the_loss_is_consistent_in_history():
    X, y = blobs()
    m = mlp(bn=False).compile("sgd", "cross_entropy")
    m.fit(X, y, epochs=1)
    w = m.get_weights()
    m.compile("adam", "cross_entropy")
    for a, b in zip(w, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert m.counters[CTR_STEP] == 0 and m.slots.shape == (2 * m.n_params,)


@pytest.mark.parametrize("make, match", [
    (lambda: fastnn.ExponentialDecay(gamma=-1), "gamma"),
    (lambda: fastnn.ExponentialDecay(gamma=float("nan")), "gamma"),
    (lambda: fastnn.StepDecay(gamma=0), "gamma"),
    (lambda: fastnn.Adaptive(factor=-1), "factor"),
    (lambda: fastnn.Adaptive(factor=0), "factor"),
    (lambda: fastnn.CosineDecay(lr_min=float("nan")), "lr_min"),
    (lambda: fastnn.CosineDecay(total_steps=0), "total_steps"),
    (lambda: fastnn.Dense(4, alpha=float("nan")), "alpha"),
    (lambda: fastnn.Activation("relu", alpha=-1), "alpha"),
    (lambda: fastnn.Dropout("0.5"), "rate"),
    (lambda: fastnn.Dense(None), "units"),
    (lambda: fastnn.Dense(2.5), "units"),
    (lambda: fastnn.Dense(True), "units"),
    (lambda: fastnn.SGD(lr=float("inf")), "lr"),
    (lambda: fastnn.SGD(momentum="0.9"), "momentum"),
    (lambda: fastnn.Sequential(seed=2 ** 64), "seed"),
    (lambda: fastnn.Sequential(seed=-1), "seed"),
    (lambda: fastnn.Sequential(fastnn.Dense(3)), "list"),
    (lambda: fastnn.EarlyStopping(monitor="val_los"), "monitor"),
    (lambda: fastnn.ReduceLROnPlateau(factor=1.0), "factor"),
])
def test_bad_parameters_are_rejected_in_one_voice(make, match):
    with pytest.raises((ValueError, TypeError), match=f"The '{match}' parameter of|{match}"):
        make()


def test_numpy_scalars_are_accepted_as_parameters():
    opt = fastnn.SGD(lr=np.float32(0.1), momentum=np.float64(0.5))
    assert type(opt.lr) is float and opt.lr == pytest.approx(0.1)
    assert fastnn.Dense(np.int64(3)).units == 3
    assert fastnn.Sequential(seed=np.uint64(2 ** 64 - 1)).seed == 2 ** 64 - 1
    m = fastnn.Sequential([fastnn.Dense(2)], seed=2 ** 64 - 1).compile("sgd", "cross_entropy")
    X, y = blobs(k=2)
    m.fit(X, y, epochs=1)


def test_fit_options_are_validated():
    X, y = blobs()
    m = mlp()
    for kwargs, match in [({"epochs": 0}, "epochs"), ({"batch_size": 2.5}, "batch_size"),
                          ({"verbose": 3}, "verbose"), ({"shuffle": "yes"}, "shuffle"),
                          ({"callbacks": [lambda e, l: None]}, "Callback"),
                          ({"validation_split": 1.0}, "validation_split")]:
        with pytest.raises((ValueError, TypeError), match=match):
            m.fit(X, y, **kwargs)


def test_partial_fit_is_one_pass_in_mini_batches_and_tells_the_truth_on_divergence(backend):
    X, y = blobs()
    a = mlp(bn=False, seed=3).compile(fastnn.SGD(0.05), "cross_entropy")
    b = mlp(bn=False, seed=3).compile(fastnn.SGD(0.05), "cross_entropy")
    a.partial_fit(X, y, batch_size=50)
    b.fit(X, y, epochs=1, batch_size=50, shuffle=False)
    np.testing.assert_array_equal(a.params, b.params)
    assert a.counters[CTR_STEP] == 5 and a.counters[CTR_SAMPLES] == len(X)
    one = mlp(bn=False, seed=3).compile(fastnn.SGD(0.05), "cross_entropy")
    one.partial_fit(X, y)  # no batch_size: one step on all rows
    assert one.counters[CTR_STEP] == 1
    # divergence in the third batch: the first two stay applied, and the message says so
    Xbad = X.copy()
    Xbad[100:150] = 3e38  # overflows the first layer's float32 outputs
    c = mlp(bn=False, seed=3).compile(fastnn.SGD(0.05), "cross_entropy")
    with pytest.raises(fastnn.NonFiniteError, match=r"batch 2 .*the 2 batch\(es\) before it were applied"):
        c.partial_fit(Xbad, y, batch_size=50)
    assert c.counters[CTR_STEP] == 2 and np.isfinite(c.params).all()


def test_batchnorm_refuses_a_fit_of_one_row_batches_only():
    X, y = blobs(n=100)
    m = mlp()
    with pytest.raises(ValueError, match="BatchNorm needs at least 2 rows .* every batch holds one row"):
        m.fit(X, y, batch_size=1)
    for call in (lambda: m.partial_fit(X[:1], y[:1]), lambda: m.train_on_batch(X[:1], y[:1]),
                 lambda: m.fit(X[:1], y[:1], batch_size=8)):
        with pytest.raises(ValueError, match="BatchNorm needs at least 2 rows"):
            call()
    assert m.epochs_trained == 0 and int(m.counters[CTR_STEP]) == 0
    m.fit(X, y, batch_size=2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_last_batch_of_one_row_leaves_the_running_statistics_as_they_were(backend, dtype):
    """It was refused (as PyTorch does), so scikit-learn's CV folds failed at random with
    batch_norm=True. Now its BatchNorm outputs beta, passes no gradient back, and updates no
    running statistic: after an epoch of 2 x 25 + 1 rows in order, the running statistics are those
    of the first 50 rows, and every value stays finite."""
    X, y = blobs(n=51, d=7)
    X = X.astype(dtype)

    def model():
        return fastnn.Sequential([fastnn.Dense(13, activation="relu"), fastnn.BatchNorm(momentum=0.2),
                                  fastnn.Dropout(0.2), fastnn.Dense(3)], seed=0, dtype=dtype).compile("adam", "cross_entropy")
    a, b = model(), model()
    a.fit(X, y, batch_size=25, shuffle=False)
    b.fit(X[:50], y[:50], batch_size=25, shuffle=False)
    assert int(a.counters[CTR_STEP]) == 3 and int(b.counters[CTR_STEP]) == 2
    np.testing.assert_array_equal(a.layers[1].running_mean, b.layers[1].running_mean)
    np.testing.assert_array_equal(a.layers[1].running_var, b.layers[1].running_var)
    assert not np.array_equal(a.layers[-1].kernel, b.layers[-1].kernel)  # the row trained what follows
    assert np.isfinite(a.params).all() and np.isfinite(a.predict_proba(X)).all()


@pytest.mark.parametrize("y, match", [
    (np.full(240, 1e20), r"label 1e\+20"),
    (np.full(240, 2 ** 63, dtype=np.uint64), "label 9223372036854775808"),
    (None, "y is None"),
])
def test_bad_labels_are_named_as_they_are(y, match):
    X, _ = blobs()
    with pytest.raises(ValueError, match=match):
        mlp().fit(X, y)


def test_sparse_and_masked_input_is_refused_with_a_clear_message():
    X, y = blobs()
    with pytest.raises(TypeError, match="masked array"):
        mlp().fit(np.ma.masked_array(X, mask=X > 0), y)
    sp = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="sparse input is not supported"):
        mlp().fit(sp.csr_matrix(X), y)


def test_nan_written_into_a_kernel_is_named_as_such_when_training_fails():
    X, y = blobs()
    m = mlp(bn=False)
    m.fit(X, y)
    m.layers[0].kernel[0, 0] = np.nan
    with pytest.raises(fastnn.NonFiniteError, match="weights.*hold NaN or infinite values"):
        m.fit(X, y)
    with pytest.raises(fastnn.NonFiniteError, match="weights.*hold NaN or infinite values"):
        m.partial_fit(X, y)
    assert np.isnan(m.layers[0].kernel[0, 0])  # and nothing claims they are finite


@pytest.mark.parametrize("where", ["optimizer state", "running statistics"])
def test_nan_in_the_optimizer_state_or_running_statistics_is_named_when_training_fails(where):
    """The check after each epoch reads the optimizer's state and batch norm's running statistics
    too, not only the weights: a NaN there (written by hand) refuses fit, which restores them."""
    X, y = blobs()
    m = mlp()
    m.fit(X, y)
    if where == "optimizer state":
        m._built.slots[3] = np.nan  # Adam's moments: no public view
    else:
        m.layers[1].running_mean[0] = np.nan
    weights = [w.copy() for w in m.get_weights()]
    with pytest.raises(fastnn.NonFiniteError, match="optimizer state or running statistics hold NaN"):
        m.fit(X, y)
    for a, b in zip(m.get_weights(), weights):
        np.testing.assert_array_equal(a, b)


def test_set_weights_refuses_a_negative_running_variance():
    m = mlp().build(6)
    w = m.get_weights()
    w[5] = -np.ones_like(w[5])  # Dense kernel, bias, BN gamma, beta, running_mean, running_var
    before = m.get_weights()
    with pytest.raises(ValueError, match="running_var must be >= 0"):
        m.set_weights(w)
    for a, b in zip(before, m.get_weights()):  # all or nothing
        np.testing.assert_array_equal(a, b)


def test_build_on_a_built_model_never_reinitialises_it():
    X, y = blobs()
    m = mlp(bn=False)
    m.fit(X, y)
    w = m.get_weights()
    m.build(6)  # same width: nothing happens
    for a, b in zip(w, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="built for 6 inputs"):
        m.build(5)


def test_what_a_built_model_was_made_from_cannot_change_under_it():
    # each of these once let the engine's description disagree with the buffers it writes
    X, y = blobs()
    m = mlp(bn=False).compile(fastnn.SGD(0.1), "cross_entropy")
    m.fit(X, y)
    with pytest.raises(AttributeError):
        m.optimizer = fastnn.Adam()  # Adam needs twice SGD's state
    with pytest.raises(AttributeError, match="cannot change once made"):
        m.optimizer.lr = 0.5
    with pytest.raises(AttributeError, match="cannot change once made"):
        fastnn.Adaptive().factor = 0
    with pytest.raises(AttributeError, match="cannot change once its model is built"):
        m.layers[0].units = 4096
    with pytest.raises(AttributeError, match=r"assign into it instead"):
        m.layers[0].kernel = np.zeros((6, 16), np.float32)
    with pytest.raises(AttributeError):
        m.dtype = np.float64
    # nor deleted: a file saved after `del layer.activation` rebuilt the layer as identity
    for obj, name in ((m.layers[0], "activation"), (m.layers[0], "units"), (m.layers[0], "kernel"),
                      (m.layers[0], "n_in"), (m.optimizer, "lr")):
        with pytest.raises(AttributeError, match="cannot .*deleted|cannot be deleted"):
            delattr(obj, name)
        assert hasattr(obj, name)
    fresh = fastnn.Dense(3, activation="tanh")
    with pytest.raises(AttributeError, match="Dense.activation cannot be deleted: set a new value"):
        del fresh.activation
    fresh.note = 1  # an attribute of the user's own comes and goes
    del fresh.note
    assert fresh.get_config()["activation"] == "tanh"
    m.layers.append(fastnn.Dense(5))  # a copy of the list: the model is unchanged
    assert len(m.layers) == 2
    m.compile("adam", "cross_entropy")
    for bad in (0, -1.0, float("nan"), "1"):
        with pytest.raises(ValueError, match="lr_scale"):
            m.lr_scale = bad
    m.layers[0].kernel[...] = 0  # writing INTO the arrays is the supported way
    assert not m.params[:6 * 16].any()
    m.fit(X, y)


def test_reduce_lr_on_plateau_counts_a_tie_with_the_best_as_no_improvement():
    # scikit-learn's rule: flat when loss > best - tol, so with tol 0 an equal loss is flat
    X, y = blobs()

    class Tie(fastnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["loss"] = [1.0, 0.9, 0.9, 0.9, 0.9][epoch]

    m = mlp(bn=False).compile(fastnn.SGD(0.1), "cross_entropy")
    h = m.fit(X, y, epochs=5, callbacks=[Tie(), fastnn.ReduceLROnPlateau(monitor="loss", factor=0.5,
                                                                         patience=2, min_delta=0.0)])
    np.testing.assert_allclose(h["lr"], [0.1, 0.1, 0.1, 0.1, 0.05])


# -- hostile round 2 ---------------------------------------------------------------------------------
def test_gradient_from_a_progress_callback_does_not_deadlock():
    # gradient() once took the running fit's own engine and lock: a hang
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20000, 20)).astype(np.float32), rng.integers(0, 2, 20000)
    m = fastnn.Sequential([fastnn.Dense(64, activation="relu"), fastnn.Dense(2)]).compile("adam", "cross_entropy")
    seen = []

    class Grad(fastnn.Callback):
        def on_epoch_progress(self, epoch, logs):
            seen.append(m.gradient(X[:10], y[:10])[0])

    done = threading.Event()
    t = threading.Thread(target=lambda: (m.fit(X, y, epochs=1, batch_size=32, callbacks=[Grad()]), done.set()),
                         daemon=True)
    t.start()
    t.join(60)
    assert done.is_set(), "fit hung"
    assert seen and all(np.isfinite(seen))


def test_an_exception_in_on_epoch_progress_ends_fit_once_its_epoch_is_over(backend):
    """It was dropped silently (the hostile tester's finding). It comes from the poller's thread
    while the epoch runs in one compiled call: fit raises it after that epoch, which counts."""
    X, y = blobs()
    calls = []

    class Boom(fastnn.Callback):
        def __init__(self, error):
            self.error = error

        def on_epoch_progress(self, epoch, logs):
            calls.append(epoch)
            raise self.error

    m = mlp(bn=False)
    with pytest.raises(RuntimeError, match="display broke"):
        m.fit(X, y, epochs=3, callbacks=[Boom(RuntimeError("display broke"))])
    assert calls == [0] and m.epochs_trained == 1
    m.fit(X, y, epochs=1)  # the model is not left locked
    # a KeyboardInterrupt there (not an Exception) was printed by the thread and fit went on
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        m.fit(X, y, epochs=3, callbacks=[Boom(KeyboardInterrupt())])
    assert calls == [2] and m.epochs_trained == 3  # epochs count on from the two before
    m.fit(X, y, epochs=1)


def test_the_arrays_a_fit_or_predict_reads_cannot_be_resized_under_it():
    """The engine reads the caller's arrays in place without the GIL: another thread's
    X.resize(..., refcheck=False) freed them under a running fit (a segfault, the hostile
    tester's finding). While fit runs (here: from its callbacks), NumPy refuses to resize X, y,
    the sample weights, validation data and the array a view of X lies in; afterwards it can."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((300, 6)).astype(np.float32)
    X, Xv = base[:200], np.ascontiguousarray(base[200:])
    y = (X[:, 0] > 0).astype(np.int64)
    yv = (Xv[:, 0] > 0).astype(np.int64)
    sw = np.ones(200, np.float32)
    tried = []

    class Resize(fastnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            for name, a in (("base", base), ("y", y), ("sw", sw), ("Xv", Xv), ("yv", yv)):
                try:
                    a.resize((1,) + a.shape[1:], refcheck=False)
                    tried.append((name, "resized"))
                except ValueError:
                    tried.append((name, "refused"))

    m = mlp(bn=False)
    m.fit(X, y, epochs=2, sample_weight=sw, validation_data=(Xv, yv), callbacks=[Resize()])
    assert set(tried) == {(k, "refused") for k in ("base", "y", "sw", "Xv", "yv")}
    # an array seen through a memoryview: the pin follows it to its owner (helper-60's segfault)
    owner = rng.standard_normal((200, 6)).astype(np.float32)
    Xm = np.frombuffer(memoryview(owner), np.float32).reshape(200, 6)
    tried.clear()

    class ResizeOwner(fastnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            with pytest.raises(ValueError, match="cannot resize"):
                owner.resize((1, 6), refcheck=False)
            tried.append(epoch)

    m.fit(Xm, y, epochs=2, callbacks=[ResizeOwner()])
    assert len(tried) == 2
    big = rng.standard_normal((20000, 6)).astype(np.float32)
    m.predict_proba(big)
    big.resize((1, 6), refcheck=False)  # nothing holds it once the calls are over
    del X
    base.resize((1, 6), refcheck=False)
    assert base.shape == (1, 6) and big.shape == (1, 6)


def test_a_shallow_copy_of_a_model_is_a_full_copy():
    X, y = blobs()
    m = mlp(bn=False)
    m.fit(X, y)
    c = copy.copy(m)
    assert all(a is not b for a, b in zip(m.layers, c.layers))
    m.layers[0].kernel[...] = 0
    assert c.layers[0].kernel.any() and not np.shares_memory(c.params, m.params)
    u = fastnn.Sequential([fastnn.Dense(3)])
    uc = copy.copy(u)
    uc.add(fastnn.Dense(2))
    assert len(u.layers) == 1
    d = copy.copy(m.layers[0])
    assert d.n_in is None and d.kernel is None
    d.units = 7  # unbound: free to change (and checked)


@pytest.mark.parametrize("attr, value", [("rate", 1.0), ("rate", float("nan")), ("rate", "0.5"),
                                         ("momentum", 5.0), ("eps", 0.0), ("units", 0), ("units", "4"),
                                         ("units", None), ("activation", "swish")])
def test_changing_a_layer_before_build_is_checked_like_its_constructor(attr, value):
    layers = {"rate": fastnn.Dropout(0.5), "momentum": fastnn.BatchNorm(), "eps": fastnn.BatchNorm(),
              "units": fastnn.Dense(4), "activation": fastnn.Dense(4)}
    with pytest.raises(ValueError, match=f"The '{attr}' parameter of"):
        setattr(layers[attr], attr, value)


def test_a_link_followed_by_another_layer_is_computed_as_declared(backend):
    X, y = blobs()
    X = X.astype(np.float64)
    m = fastnn.Sequential([fastnn.Dense(3, activation="softmax"), fastnn.BatchNorm()], dtype="float64")
    m.compile("adam", "cross_entropy")
    m.fit(X, y, epochs=1)
    W, b, gamma, beta, mean, var = m.get_weights()
    z = X @ W + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expect = (p - mean) / np.sqrt(var + 1e-5) * gamma + beta  # BN(softmax(z)), as declared
    np.testing.assert_allclose(m.forward(X), expect, rtol=1e-10, atol=1e-12)


def test_sample_weights_that_vanish_in_the_model_dtype_are_refused():
    X, y = blobs(n=64)
    with pytest.raises(ValueError, match="smallest normal float32"):
        mlp(bn=False).fit(X, y, sample_weight=np.full(64, 1e-40))
    with pytest.raises(ValueError, match="training part"):
        mlp(bn=False).fit(X, y, sample_weight=np.r_[np.zeros(48), np.ones(16)], validation_split=0.25)


def test_base_classes_are_not_layers_nor_rebuildable_from_configs():
    with pytest.raises(TypeError, match="expected a fastnn layer"):
        fastnn.Sequential([fastnn.nn.Layer()])
    with pytest.raises(ValueError, match="unknown fastnn class 'Layer'"):
        fastnn.Sequential.from_config({"layers": [{"class_name": "Layer", "config": {}}]})


def test_out_of_range_schedule_and_step_values_are_refused_up_front():
    for make in (lambda: fastnn.StepDecay(step_size=2 ** 63), lambda: fastnn.CosineDecay(total_steps=2 ** 63),
                 lambda: fastnn.SGD(0.01, schedule=fastnn.CosineDecay(lr_min=0.1))):
        with pytest.raises(ValueError):
            make()
    X, y = blobs()
    m = mlp(bn=False).build(6)
    for step in (1.7, "3", 2 ** 64, -1):
        with pytest.raises(ValueError, match="step"):
            m.gradient(X, y, step=step)


def test_counters_are_read_only_and_weights_must_be_real():
    m = mlp(bn=False).build(6)
    with pytest.raises(ValueError):
        m.counters[0] = -1
    w = m.get_weights()
    with pytest.raises(TypeError, match="real numbers"):
        m.set_weights([w[0] + 1j] + w[1:])
    with pytest.raises(TypeError, match="real numbers"):
        m.set_weights([w[0].astype(str)] + w[1:])


@pytest.mark.parametrize("edit", [
    lambda s: s.update(_seed=-1), lambda s: s.update(_seed=2 ** 70), lambda s: s.update(_epochs_trained=2 ** 70),
    lambda s: s.update(_lr_scale="x"), lambda s: s.update(_lr_scale=-1.0), lambda s: s.update(_optimizer="adam"),
    lambda s: s["_layers"].append(s["_layers"][0]),
    lambda s: s["_built"].update(params=np.zeros(3, np.float32)),
    lambda s: s["_built"].update(slots=np.zeros(3, np.float32)),
    lambda s: s["_built"].update(params=s["_built"]["params"].astype(np.float64)),
])
def test_an_edited_pickle_raises_instead_of_loading_a_broken_model(edit):
    m = mlp(bn=True)
    X, y = blobs()
    m.fit(X, y, batch_size=40)
    state = m.__getstate__()
    edit(state)
    twin = fastnn.Sequential.__new__(fastnn.Sequential)
    with pytest.raises((ValueError, TypeError)):
        twin.__setstate__(state)


def test_a_pickled_layer_with_a_bad_value_is_refused():
    d = fastnn.Dropout(0.5)
    state = d.__getstate__()
    state["rate"] = 7.0
    with pytest.raises(ValueError, match="rate"):
        fastnn.Dropout.__new__(fastnn.Dropout).__setstate__(state)
    o = fastnn.SGD(0.1)
    state = dict(o.__dict__, lr=-1.0)
    with pytest.raises(ValueError, match="lr"):
        fastnn.SGD.__new__(fastnn.SGD).__setstate__(state)


def test_a_layer_subclass_whose_hooks_disagree_with_its_engine_kind_is_refused_at_build():
    class ShortKernel(fastnn.Dense):
        def parameters(self, n_in, n_out):
            return [("kernel", (1, n_out), True), ("bias", (n_out,), False)]

    class Widening(fastnn.Activation):
        def output_width(self, n_in):
            return n_in + 5

    for bad in (ShortKernel(4), Widening("relu")):
        m = fastnn.Sequential([fastnn.Dense(3), bad, fastnn.Dense(2)]).compile("sgd", "cross_entropy")
        with pytest.raises(TypeError, match="does not use"):
            m.build(6)


def test_a_learning_rate_the_dtype_cannot_hold_is_refused_and_no_step_is_taken(backend):
    X, y = blobs()
    m = mlp(bn=False).compile(fastnn.SGD(10.0), "cross_entropy")
    m.fit(X, y)
    w = m.get_weights()
    m.lr_scale = 1e300
    with pytest.raises(ValueError, match="epoch 1: the learning rate is 1e\\+301 .* beyond the largest float32"):
        m.fit(X, y)
    for a, b in zip(w, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    m.lr_scale = 1.0
    for bad in (-2000, 1.5, "abc", None, 2 ** 64):
        with pytest.raises(ValueError, match="epochs_trained"):
            m.epochs_trained = bad
    m.lr_scale = 1e300
    with pytest.raises(ValueError, match="partial_fit: the learning rate is 1e\\+301"):
        m.partial_fit(X, y)
    # below that check, the engine itself takes no step at a rate its dtype cannot hold
    from fastnn._engine.records import optim_record, result_record
    b = m._built
    engine, _ = b.pool.get(X.shape[0])
    optim = optim_record(**m.optimizer.engine_fields(0), lr_scale=1e300)
    Xc, T, labels, sw = m._check_xy(X, y, None)
    status, _ = engine.train_step(result_record(), b.params, b.slots, b.state, b.counters, optim, Xc, T,
                                  labels, sw, m.epochs_trained)
    assert status == "nonfinite"
    for a, b in zip(w, m.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- hostile round 14 --------------------------------------------------------------------------------
def test_setstate_on_a_live_layer_or_optimizer_is_refused():
    """Layer.__setstate__ on a built model's layer made it disagree with the model, whose save then
    replaced a good file with one that cannot load; pickle calls it on new, empty objects only."""
    X, y = blobs()
    m = mlp(bn=False)
    m.fit(X, y)
    before = m.get_weights()
    with pytest.raises(RuntimeError, match="new, empty object"):
        m.layers[0].__setstate__({"units": 100})
    with pytest.raises(RuntimeError, match="new, empty object"):
        fastnn.Dense(3).__setstate__({"units": 100})  # unbound: also refused, for one rule
    assert m.layers[0].units == 16 and m.layers[0].get_config() == pickle.loads(pickle.dumps(m)).layers[0].get_config()
    opt = fastnn.Adam(1e-3)
    with pytest.raises(AttributeError, match="cannot change once made"):
        opt.__setstate__({"lr": 5.0})
    assert opt.lr == 1e-3 and pickle.loads(pickle.dumps(opt)).lr == 1e-3
    assert copy.deepcopy(opt).get_config() == opt.get_config()
    assert all((a == b).all() for a, b in zip(m.get_weights(), before))


def test_a_progress_callback_is_told_why_it_cannot_change_its_model():
    """on_epoch_progress runs in a thread of its own while the epoch holds the model: the error said
    the model was being trained in another thread, to the model's own callback."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20000, 16)).astype(np.float32), rng.integers(0, 3, 20000)
    m = fastnn.Sequential([fastnn.Dense(64, activation="relu"), fastnn.Dense(3)]).compile("adam", "cross_entropy")
    errors = []

    class Change(fastnn.Callback):
        def on_epoch_progress(self, epoch, logs):
            if not errors:
                try:
                    m.set_weights(m.get_weights())
                except RuntimeError as exc:
                    errors.append(str(exc))

        def on_epoch_end(self, epoch, logs=None):
            m.set_weights(m.get_weights())  # allowed here

    m.fit(X, y, epochs=1, batch_size=32, callbacks=[Change()])
    assert errors == ["cannot set the weights from on_epoch_progress: it runs in a thread of its own "
                      "while the epoch trains this model; do it in on_epoch_end"]


def test_sequential_attribute_errors_name_sequential():
    m = mlp(bn=False)
    with pytest.raises(ValueError, match="'lr_scale' parameter of Sequential must be"):
        m.lr_scale = -1
    with pytest.raises(ValueError, match="'epochs_trained' parameter of Sequential must be"):
        m.epochs_trained = -1


def test_float64_beyond_float32_range_is_refused_by_name_without_a_numpy_warning():
    m = fastnn.Sequential([fastnn.Dense(3)]).compile("adam", "cross_entropy").build(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"X holds values beyond the range of float32"):
            m.predict(np.array([[1e39, 0.0]]))
        with pytest.raises(ValueError, match=r"X contains 1 NaN or infinite"):
            m.predict(np.array([[np.inf, 0.0]]))
        with pytest.raises(ValueError, match=r"beyond the range of float32"):
            m.fit(np.array([[1e39, 0.0], [0.0, 1.0]]), [0, 1], verbose=0)
        r = fastnn.Sequential([fastnn.Dense(1)]).compile("adam", "mse").build(2)
        with pytest.raises(ValueError, match=r"y holds values beyond the range of float32"):
            r.fit(np.ones((2, 2)), np.array([1e39, 0.0]), verbose=0)
        with pytest.raises(ValueError, match=r"sample_weight overflows float32"):
            r.fit(np.ones((2, 2)), np.array([1.0, 0.0]), sample_weight=np.array([1e39, 1.0]), verbose=0)


def test_ops_name_a_read_only_output():
    A = np.ones((2, 2), np.float32)
    C = np.zeros((2, 2), np.float32)
    C.flags.writeable = False
    with pytest.raises(ValueError, match="C is written in place but is read-only"):
        ops.gemm(A, A, C)
    with pytest.raises(ValueError, match="Y is written in place but is read-only"):
        ops.bias_add(C, np.ones(2, np.float32))
    assert not C.any()
    np.testing.assert_array_equal(ops.gemm(A, A, np.zeros((2, 2), np.float32)), 2 * A)


def test_a_progress_callback_touching_another_training_model_is_told_it_trains_elsewhere():
    """The on_epoch_progress wording is for the callback's own model only: another model that a
    thread is training is "being trained in another thread", as from anywhere."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20000, 16)).astype(np.float32), rng.integers(0, 3, 20000)
    other = fastnn.Sequential([fastnn.Dense(64, activation="relu"), fastnn.Dense(3)]).compile("adam", "cross_entropy")
    started, finish = threading.Event(), threading.Event()

    class Hold(fastnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            started.set()
            finish.wait(60)

    t = threading.Thread(target=lambda: other.fit(X[:100], y[:100], epochs=1, callbacks=[Hold()]), daemon=True)
    t.start()
    assert started.wait(60)
    errors = []

    class Touch(fastnn.Callback):
        def on_epoch_progress(self, epoch, logs):
            if not errors:
                try:
                    other.set_weights(other.get_weights())
                except RuntimeError as exc:
                    errors.append(str(exc))

    try:
        mine = fastnn.Sequential([fastnn.Dense(8), fastnn.Dense(3)]).compile("adam", "cross_entropy")
        mine.fit(X, y, epochs=1, batch_size=32, callbacks=[Touch()])
    finally:
        finish.set()
        t.join(60)
    assert errors == ["cannot set the weights: this model is being trained in another thread"]


def test_a_huge_layer_is_counted_exactly_and_refused():
    """make_plan counted with np.prod, which wraps past int64: --hidden 4000000000000000000 was
    reported as 5.6e18 parameters, and a width whose count wrapped to a small number built."""
    m = fastnn.Sequential([fastnn.Dense(4 * 10 ** 18), fastnn.Dense(3)]).compile("adam", "cross_entropy")
    n = 5 * 4 * 10 ** 18 + (4 * 10 ** 18 + 1) * 3
    with pytest.raises(ValueError, match=f"a model of {n:,} parameters is more than an array can hold"):
        m.build(4)
    assert not m.built


def test_two_threads_copying_one_model_at_once_both_succeed():
    """A copy held the model's lock without blocking others' copies out politely: dask pickling one
    result for two destinations at once got "this model is being trained in another thread". A
    short call of another thread is waited for; a training call is still refused."""
    X, y = blobs()
    m = mlp(bn=True)
    m.fit(X, y)
    errors, go = [], threading.Barrier(4)

    def copy_many():
        go.wait()
        for _ in range(200):
            try:
                pickle.loads(pickle.dumps(m))
                copy.deepcopy(m)
            except Exception as exc:  # pragma: no cover - the failure being tested
                errors.append(exc)
                return

    threads = [threading.Thread(target=copy_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []


def test_every_optimizer_takes_its_rate_as_lr_or_as_keras_learning_rate():
    from fastnn.nn import optimizers as opts
    for cls in (fastnn.SGD, fastnn.Adam, fastnn.AdamW, fastnn.RMSprop, opts.SklearnSGD, opts.SklearnAdam):
        a = cls(learning_rate=0.0123)
        assert a.lr == 0.0123 and a.get_config() == cls(lr=0.0123).get_config(), cls
        assert "learning_rate" not in a.get_config()
        with pytest.raises(TypeError, match="give the rate once"):
            cls(0.1, learning_rate=0.2)
        with pytest.raises(TypeError, match="give the rate once"):
            cls(lr=0.1, learning_rate=0.2)
    m = fastnn.Sequential([fastnn.Dense(2)]).compile("rmsprop", "mse", learning_rate=0.05)
    assert m.optimizer == fastnn.RMSprop(lr=0.05) or m.optimizer.lr == 0.05


def test_an_optimizer_subclass_with_its_own_learning_rate_keeps_it(tmp_path):
    """The alias must not take the argument from a subclass whose constructor names it (the hostile
    tester's Keras-style SGD could be saved and not loaded)."""
    class KerasSGD(fastnn.SGD):
        def __init__(self, learning_rate=0.01, momentum=0.0):
            super().__init__(lr=learning_rate, momentum=momentum)

        learning_rate = property(lambda self: self.lr)

    opt = KerasSGD(learning_rate=0.3)
    assert opt.lr == 0.3 and KerasSGD.from_config(opt.get_config()).lr == 0.3
    X, y = blobs()
    m = fastnn.Sequential([fastnn.Dense(3)], seed=0).compile(KerasSGD(0.2), "cross_entropy")
    m.fit(X, y)
    m.save(tmp_path / "k.safetensors")
    back = fastnn.load(tmp_path / "k.safetensors")
    assert type(back.optimizer) is KerasSGD and back.optimizer.lr == 0.2


def test_a_pickled_optimizer_or_schedule_is_made_again_by_its_constructor():
    """Hand-made pickle states (hostile pass helper-45): a field named as a class attribute (an
    Adaptive schedule carrying a 'plateau_callback' that fit would call, an SGD claiming another
    kind) is refused, a missing parameter too, and a schedule pickled by name comes back as the
    Schedule the constructor makes. A subclass's own data and tuples survive (helper-46)."""
    from fastnn.nn.schedules import Adaptive

    def restored(cls, fields):
        obj = cls.__new__(cls)
        obj.__dict__.update(fields)
        return pickle.loads(pickle.dumps(obj))

    back = restored(fastnn.SGD, {**fastnn.SGD(0.1).__dict__, "schedule": "adaptive"})
    assert isinstance(back.schedule, Adaptive) and back == fastnn.SGD(0.1, schedule="adaptive") or \
        back.get_config() == fastnn.SGD(0.1, schedule="adaptive").get_config()
    for name, value in (("plateau_callback", fastnn.EarlyStopping), ("engine_fields", dict), ("kind", "adam")):
        with pytest.raises(ValueError, match=f"fields named as its class's attributes: '{name}'"):
            restored(Adaptive if name != "kind" else fastnn.SGD,
                     {**(Adaptive() if name != "kind" else fastnn.SGD(0.1)).__dict__, name: value})
    fields = dict(Adaptive().__dict__)
    del fields["patience"]
    with pytest.raises(ValueError, match="a pickled Adaptive lacks \\['patience'\\]"):
        restored(Adaptive, fields)
    with pytest.raises(ValueError, match="'lr' parameter"):
        restored(fastnn.Adam, {**fastnn.Adam().__dict__, "lr": -1.0})
    with pytest.raises(ValueError, match="cannot restore a pickled SGD"):  # the constructor's cross check
        restored(fastnn.SGD, {**fastnn.SGD(0.1).__dict__, "nesterov": True})
    thawed = restored(fastnn.SGD, {**fastnn.SGD(0.1).__dict__, "_frozen": False})
    with pytest.raises(AttributeError, match="cannot change once made"):
        thawed.lr = 5.0


class _TaggedSGD(fastnn.SGD):
    """A user's subclass keeping data of its own (module level: pickle finds it)."""

    def __init__(self, lr=0.1, tag=("a", 1)):
        object.__setattr__(self, "tag", tag)
        object.__setattr__(self, "_derived", str(tag) * 2)
        fastnn.SGD.__init__(self, lr=lr)


def test_a_subclass_with_data_of_its_own_pickles_and_deep_copies():
    opt = _TaggedSGD(0.2, tag=(3, 4))
    for back in (pickle.loads(pickle.dumps(opt)), copy.deepcopy(opt)):
        assert type(back) is _TaggedSGD and back.tag == (3, 4) and back._derived == opt._derived
        assert back.lr == 0.2
    m = fastnn.Sequential([fastnn.Dense(2)]).compile(opt, "mse")
    assert copy.deepcopy(m).optimizer.tag == (3, 4)

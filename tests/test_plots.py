"""Training curves: History.plot / fastnn.plot_history draw what the history holds (checked on
the returned Figure's Line2D data, not on pixels), write a PNG without touching the user's
backend, and fastnn imports and explains itself without matplotlib."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastnn

needs_matplotlib = pytest.mark.skipif(
    __import__("importlib").util.find_spec("matplotlib") is None, reason="matplotlib is not installed")


def _fit(loss="cross_entropy", epochs=3, validation=True, model=None):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) if loss == "cross_entropy" else X[:, :1] * 2
    if model is None:
        model = fastnn.Sequential([fastnn.Dense(8, activation="relu"), fastnn.Dense(2 if loss == "cross_entropy" else 1)],
                                  seed=0)
        model.compile(fastnn.Adam(lr=1e-2), loss=loss)
    val = (X[:40], y[:40]) if validation else None
    return model.fit(X[40:], y[40:], epochs=epochs, batch_size=16, validation_data=val), model


def _lines(fig):
    """{label: (x, y)} over every Axes of the figure."""
    return {line.get_label(): (np.asarray(line.get_xdata()), np.asarray(line.get_ydata()))
            for ax in fig.axes for line in ax.get_lines()}


def _assert_draws(fig, history, keys, epochs):
    names = {"loss": "training loss", "val_loss": "validation loss",
             "accuracy": "training accuracy", "val_accuracy": "validation accuracy"}
    lines = _lines(fig)
    assert sorted(lines) == sorted(names[k] for k in keys)
    for k in keys:
        x, y = lines[names[k]]
        np.testing.assert_array_equal(x, epochs)
        np.testing.assert_allclose(y, history[k])


def test_fastnn_imports_without_matplotlib_and_plot_names_the_extra(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import fastnn\n"
            "h = fastnn.History(); h.on_epoch_end(0, {'loss': 1.0})\n"
            "for call in (h.plot, lambda: fastnn.plot_history(h, path='x.png')):\n"
            "    try:\n"
            "        call()\n"
            "    except ImportError as e:\n"
            "        print(e)\n"
            "print(sorted(m for m in sys.modules if m.startswith('matplotlib.')))\n")
    root = os.path.dirname(os.path.dirname(fastnn.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["plotting needs matplotlib, which is not installed: pip install fastnn[plot]"] * 2 + ["[]"]
    assert not (tmp_path / "x.png").exists()


def test_importing_fastnn_does_not_import_matplotlib():
    code = "import sys, fastnn; print(any(m.split('.')[0] == 'matplotlib' for m in sys.modules))"
    root = os.path.dirname(os.path.dirname(fastnn.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


@needs_matplotlib
def test_plot_writes_a_png_of_the_loss_and_accuracy_curves(tmp_path):
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    history, _ = _fit()
    backend = matplotlib.rcParams["backend"]
    fig = history.plot(tmp_path / "curves.png")
    png = (tmp_path / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    assert isinstance(fig.canvas, FigureCanvasAgg) and matplotlib.rcParams["backend"] == backend
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy"]
    _assert_draws(fig, history, ["loss", "val_loss", "accuracy", "val_accuracy"], [1, 2, 3])
    assert fastnn.plot_history(history, tmp_path / "same.png").axes[0].get_lines()[0].get_gid() == "loss"


@needs_matplotlib
def test_validation_lines_only_with_validation_and_accuracy_only_for_classification(tmp_path):
    history, _ = _fit(validation=False)
    fig = fastnn.plot_history(history, tmp_path / "train-only.png")
    _assert_draws(fig, history, ["loss", "accuracy"], [1, 2, 3])
    history, _ = _fit(loss="mse", epochs=4)
    assert "accuracy" not in history.history
    fig = history.plot(tmp_path / "regression.png")
    assert len(fig.axes) == 1 and fig.axes[0].get_ylabel() == "loss"
    _assert_draws(fig, history, ["loss", "val_loss"], [1, 2, 3, 4])


@needs_matplotlib
def test_a_second_fit_continues_the_epoch_count(tmp_path):
    _, model = _fit(epochs=2)
    history, _ = _fit(epochs=3, model=model)
    _assert_draws(history.plot(tmp_path / "more.png"), history,
                  ["loss", "val_loss", "accuracy", "val_accuracy"], [3, 4, 5])


@needs_matplotlib
def test_plot_into_the_callers_axes():
    from matplotlib.figure import Figure

    history, _ = _fit()
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert history.plot(ax=[left, right]) is fig
    assert [ax.get_ylabel() for ax in (left, right)] == ["loss", "accuracy"]
    _assert_draws(fig, history, ["loss", "val_loss", "accuracy", "val_accuracy"], [1, 2, 3])
    fig = Figure()
    single = fig.subplots()
    assert history.plot(ax=single) is fig and len(fig.axes) == 2  # accuracy on a twin axis
    _assert_draws(fig, history, ["loss", "val_loss", "accuracy", "val_accuracy"], [1, 2, 3])
    with pytest.raises(ValueError, match="sequence of 2 Axes"):
        history.plot(ax=[single])


@needs_matplotlib
def test_without_path_or_ax_the_figure_comes_from_pyplot():
    import matplotlib.pyplot as plt

    history, _ = _fit(epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a non-interactive backend may say it cannot show
        fig = fastnn.plot_history(history, title="run 1")
    try:
        assert fig.number in plt.get_fignums() and fig._suptitle.get_text() == "run 1"
        _assert_draws(fig, history, ["loss", "val_loss", "accuracy", "val_accuracy"], [1, 2])
    finally:
        plt.close(fig)


@needs_matplotlib
def test_plot_history_takes_a_dict_and_refuses_what_it_cannot_draw(tmp_path):
    logs = {"loss": [3.0, 2.0, 1.5], "lr": [0.1] * 3, "val_loss": [3.5, 2.5, None]}
    fig = fastnn.plot_history(logs, tmp_path / "dict.png")
    x, y = _lines(fig)["validation loss"]
    assert x.tolist() == [1, 2, 3] and y[:2].tolist() == [3.5, 2.5] and np.isnan(y[2])
    with pytest.raises(ValueError, match="no epochs"):
        fastnn.plot_history(fastnn.History())
    with pytest.raises(ValueError, match="2 values for 3 epochs"):
        fastnn.plot_history({"loss": [1, 2, 3], "accuracy": [0.5, 0.6]})
    with pytest.raises(TypeError, match="History"):
        fastnn.plot_history([1, 2, 3])


@needs_matplotlib
def test_an_estimators_history_plots(tmp_path):
    pytest.importorskip("sklearn")
    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(1)
    X = rng.standard_normal((90, 4))
    y = np.where(X[:, 0] > 0, "yes", "no")
    clf = fastnn.MLPClassifier(hidden_layer_sizes=(6,), max_iter=4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    fig = clf.history_.plot(tmp_path / "clf.png")
    assert (tmp_path / "clf.png").stat().st_size > 0
    keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in clf.history_.history]
    _assert_draws(fig, clf.history_, keys, [1, 2, 3, 4])
    assert _lines(fastnn.plot_history(clf, tmp_path / "est.png")).keys() == _lines(fig).keys()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        lbfgs = fastnn.MLPClassifier(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=4).fit(X, y)
    with pytest.raises(ValueError, match="solver='lbfgs', which keeps no per-epoch history"):
        fastnn.plot_history(lbfgs)


@needs_matplotlib
def test_a_plot_is_written_to_exactly_the_path_given_in_one_step(tmp_path, monkeypatch):
    """matplotlib's savefig writes 'curves' to 'curves.png' and a directory 'plots' to
    'plots.png'; plot_history writes exactly the file named (PNG without an extension), refuses a
    directory and an unknown format before drawing, and a write that fails leaves the old file."""
    from matplotlib.figure import Figure

    history, _ = _fit()
    history.plot(tmp_path / "curves")
    assert (tmp_path / "curves").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves"]
    fastnn.plot_history(history, str(tmp_path / "curves.SVG"))
    assert b"<svg" in (tmp_path / "curves.SVG").read_bytes()[:1000]
    (tmp_path / "plots").mkdir()
    with pytest.raises(IsADirectoryError):
        history.plot(tmp_path / "plots")
    with pytest.raises(ValueError, match="cannot write a plot as 'xyz'"):
        history.plot(tmp_path / "curves.xyz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves", "curves.SVG", "plots"]

    old = (tmp_path / "curves").read_bytes()
    real = Figure.savefig

    def fails_half_way(self, f, **kw):
        real(self, f, **kw)
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", fails_half_way)
    with pytest.raises(OSError, match="disk full"):
        history.plot(tmp_path / "curves", title="new")
    assert (tmp_path / "curves").read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves", "curves.SVG", "plots"]


@needs_matplotlib
def test_a_plot_goes_into_a_file_object_or_a_special_file_as_savefig_writes_it(tmp_path):
    """The atomic write is for paths of regular files: a BytesIO or an open file gets the figure
    as savefig writes it, and /dev/null (a special file) is written in place."""
    import io

    history, _ = _fit()
    buf = io.BytesIO()
    history.plot(buf)
    assert buf.getvalue().startswith(b"\x89PNG\r\n\x1a\n")
    with open(tmp_path / "open.png", "wb") as f:
        fastnn.plot_history(history, f)
    assert (tmp_path / "open.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    if os.path.exists(os.devnull):
        history.plot(os.devnull)
    with pytest.raises(FileNotFoundError):
        history.plot(tmp_path / "missing" / "x.png")

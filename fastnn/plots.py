"""Training curves: plot_history(history) draws loss and (for classification) accuracy per epoch,
training and validation, with matplotlib.

matplotlib is an optional extra (pip install fastnn[plot]) imported only when a plot is drawn, so
fastnn imports without it. Writing a file with no `ax` given builds a bare Figure on an Agg
canvas: pyplot is not imported, the user's backend is not changed and no window opens. Without
`path` or `ax` the figure comes from pyplot, for plt.show() or a notebook to display.

A figure is written to exactly the path given, in the format its extension names (PNG when it has
none: matplotlib's savefig would write 'curves' to 'curves.png'), in one step as model files are
(fastnn.files.atomic): a failed or interrupted write leaves the file that was there.
"""
import math
import os
import stat
from collections.abc import Mapping

_HINT = "plotting needs matplotlib, which is not installed: pip install fastnn[plot]"
_PANELS = (("loss", "-"), ("accuracy", "--"))         # metric, line style
_KINDS = (("", "training", "C0"), ("val_", "validation", "C1"))  # key prefix, label, colour


def _require_matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.axes import Axes  # noqa: F401
    except ImportError:
        raise ImportError(_HINT) from None


def _curves(history):
    """({key: [float, ...]}, [epoch, ...]) from a History, anything with a fitted `history_` or
    `history` (estimators, Sequential) or a mapping of per-epoch lists. Epochs count from 1 (a
    History's own numbers + 1, so a second fit continues where the first stopped)."""
    from .nn.callbacks import History

    source = history
    if not isinstance(source, (History, Mapping)):
        source = getattr(history, "history_", None) or getattr(history, "history", None)
    if isinstance(source, History):
        logs, epochs = source.history, [int(e) + 1 for e in source.epoch]
    elif isinstance(source, Mapping):
        logs, epochs = source, None
    elif getattr(history, "solver", None) == "lbfgs" and hasattr(history, "coefs_"):
        raise ValueError(f"this {type(history).__name__} was fitted with solver='lbfgs', which keeps no "
                         f"per-epoch history (nor does scikit-learn's: no loss_curve_); fit with 'adam' "
                         f"or 'sgd' to plot one")
    else:
        raise TypeError("plot_history needs a fastnn History (what fit returns), a fitted model or "
                        f"estimator, or a dict of per-epoch lists; got {type(history).__name__}")
    wanted = [p + m for m, _ in _PANELS for p, _, _ in _KINDS]
    curves = {k: [math.nan if v is None else float(v) for v in logs[k]] for k in wanted if k in logs}
    n = max((len(v) for v in curves.values()), default=0)
    if n == 0:
        raise ValueError("the history holds no epochs of loss or accuracy to plot")
    if epochs is None or len(epochs) != n:
        epochs = list(range(1, n + 1))
    for k, v in curves.items():
        if len(v) != n:
            raise ValueError(f"history['{k}'] has {len(v)} values for {n} epochs")
    return curves, epochs


def plot_history(history, path=None, ax=None, *, title=None, figsize=None, dpi=100):
    """Plot a training history and return the matplotlib Figure.

    One panel per metric: 'loss' and, when the history has it (classification), 'accuracy'. In
    each, the training curve (blue) and, when fit had validation data, the validation curve
    (orange), against the epoch, 1 to n; every line is labelled '<training|validation> <metric>'.
    history: a History (what fit returns), a fitted model or estimator (its history / history_),
        or a dict {'loss': [...], 'val_loss': [...], 'accuracy': [...], ...}.
    path: also write the figure to that file (PNG, SVG, PDF... by its extension; PNG without one).
    ax: draw into this Axes (accuracy, dashed, then goes on a twin axis on the right) or into
        these Axes (one per panel); by default a new figure is made.
    """
    _require_matplotlib()
    fmt = None if path is None or _is_file_object(path) else _format(path)
    curves, epochs = _curves(history)
    panels = [(m, style) for m, style in _PANELS if m in curves or "val_" + m in curves]
    twin = ax is not None and _is_axes(ax) and len(panels) > 1
    fig, axes = _axes_for(ax, len(panels), path, figsize or (5.0 * len(panels), 3.8))
    from matplotlib.ticker import MaxNLocator

    for a, (metric, style) in zip(axes, panels):
        for prefix, kind, color in _KINDS:
            if prefix + metric in curves:
                line, = a.plot(epochs, curves[prefix + metric], style, color=color, label=f"{kind} {metric}",
                               marker="o" if len(epochs) <= 30 else None, markersize=3)
                line.set_gid(prefix + metric)
        a.set_ylabel(metric)
        a.set_xlabel("epoch")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].grid(True, alpha=0.3)
    if twin:  # one legend for the two axes
        lines = [line for a in axes for line in a.get_lines()]
        axes[0].legend(lines, [line.get_label() for line in lines], fontsize="small")
    else:
        for a in axes:
            a.grid(True, alpha=0.3)
            a.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    if ax is None:
        fig.tight_layout()
    if path is not None:
        _write(fig, path, fmt, dpi)
    return fig


def _is_file_object(path):
    return hasattr(path, "write")


def _write(fig, path, fmt, dpi):
    """A file object (a BytesIO, an open file) gets the figure as savefig writes it (PNG unless
    rcParams say otherwise); a path that names an existing non-regular file (/dev/null, a FIFO)
    is written in place; any other path is written in one step (atomic_write)."""
    if _is_file_object(path):
        fig.savefig(path, dpi=dpi)
        return
    try:
        mode = os.stat(path).st_mode
        special = not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)
    except OSError:
        special = False
    if special:
        fig.savefig(path, format=fmt, dpi=dpi)
        return
    from .files.atomic import atomic_write
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi))


def _format(path):
    """The image format that path's extension names ('png' when it has none), checked against
    matplotlib's before anything is drawn."""
    from matplotlib.backend_bases import FigureCanvasBase

    try:
        name = os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"path must be a file name, not {type(path).__name__}") from None
    fmt = os.path.splitext(name)[1][1:].lower() or "png"
    known = FigureCanvasBase.get_supported_filetypes()
    if fmt not in known:
        raise ValueError(f"cannot write a plot as {fmt!r} ({name!r}): the formats are {', '.join(sorted(known))}")
    return fmt


def _is_axes(ax):
    from matplotlib.axes import Axes
    return isinstance(ax, Axes)


def _axes_for(ax, n, path, figsize):
    """(root Figure, n Axes): the caller's, or a new figure's: pyplot's when nothing is written,
    else a bare Figure on an Agg canvas (no pyplot, no change of backend)."""
    if ax is None:
        if path is None:
            import matplotlib.pyplot as plt
            fig, grid = plt.subplots(1, n, figsize=figsize, squeeze=False)
        else:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
            fig = Figure(figsize=figsize)
            FigureCanvasAgg(fig)
            grid = fig.subplots(1, n, squeeze=False)
        return fig, list(grid.flat)
    if _is_axes(ax):
        axes = [ax] + ([ax.twinx()] if n > 1 else [])
    else:
        try:
            axes = list(getattr(ax, "flat", ax))
        except TypeError:
            axes = []
        if len(axes) < n or not all(_is_axes(a) for a in axes[:n]):
            raise ValueError(f"ax must be a matplotlib Axes or a sequence of {n} Axes (one per "
                             f"panel: loss{', accuracy' if n > 1 else ''}); got {type(ax).__name__}")
    fig = axes[0].get_figure()
    return getattr(fig, "figure", None) or fig, axes[:n]  # a SubFigure's .figure is the root Figure

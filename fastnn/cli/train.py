"""fastnn train: train a Sequential on MNIST or on the user's data, report, save it."""
import os
import time

import numpy as np

from ..nn.callbacks import Callback
from . import _common as c

NAME = "train"
HELP = "train a network on MNIST (the default) or on your CSV / .npz data"
DESCRIPTION = """\
Train a multi-layer perceptron and report its accuracy (R² and RMSE for a regression) on MNIST's
test set, or on the rows held out from --data by --validation-split.

--data takes a CSV file with a header row (the target is the column named by --target, by default
the last one; every other column is a numeric feature) or a .npz archive with arrays X and y.
Labels may be text or numbers; the task is a regression when the target is numeric with
fractional values (or --task regression), a classification otherwise. The model file records
the class labels, the feature and target names, so `fastnn predict` answers in the original
labels.

Ctrl-C stops training between two batches; nothing is written then."""
EPILOG = """\
examples:
  fastnn train                                  # MNIST, 784-256-128-10, 3 epochs
  fastnn train --teaching                       # 784-30-10 sigmoid, MSE, plain SGD
  fastnn train --data iris.csv --target species --epochs 50 --output iris.safetensors
  fastnn train --data houses.csv --target price --task regression --hidden 64,64
  fastnn train --data xy.npz --dropout 0.2 --batch-norm --early-stopping 5 --plot curves.png"""


def add_arguments(p, default_output="model.safetensors"):
    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="FILE", help="CSV (header row) or .npz (X, y) file; default: MNIST")
    g.add_argument("--target", metavar="COLUMN", help="the CSV's target column (default: the last one)")
    g.add_argument("--task", choices=["auto", "classification", "regression"], default="auto",
                   help="default auto: regression when the target is numeric with fractional values")
    g.add_argument("--limit", metavar="N", type=c.int_at_least(1),
                   help="use only the first N rows (of MNIST: of its training and of its test set)")
    g.add_argument("--validation-split", metavar="F", type=c.fraction, default=None,
                   help="fraction of the rows held out (at random, by --seed) to validate on "
                        "(default: 0.2 with --data; on MNIST 0.1 with --early-stopping, else 0: "
                        "it shows its test set's loss, never stopping on it)")
    g = p.add_argument_group("network")
    g.add_argument("--hidden", metavar="W,W", type=c.widths, default=None,
                   help="hidden layer widths (default: 256,128; 30 with --teaching; 'none': none)")
    g.add_argument("--activation", choices=_activations(), default=None,
                   help="hidden activation (default: relu; sigmoid with --teaching)")
    g.add_argument("--dropout", metavar="RATE", type=c.fraction, default=0.0,
                   help="dropout after each hidden layer (default: 0)")
    g.add_argument("--batch-norm", action="store_true", help="batch normalisation before each hidden activation")
    g.add_argument("--teaching", action="store_true",
                   help="the classic introduction: sigmoid layers, MSE on one-hot targets, SGD lr 3, "
                        "batch 10, 10 epochs")
    g = p.add_argument_group("training")
    g.add_argument("--optimizer", choices=_optimizers(), default=None,
                   help="default: adam (sgd with --teaching)")
    g.add_argument("--lr", metavar="RATE", type=float, default=None,
                   help="learning rate (default: the optimizer's; 3.0 with --teaching)")
    g.add_argument("--epochs", type=c.int_at_least(1), default=None,
                   help="default: 3 on MNIST, 20 with --data, 10 with --teaching")
    g.add_argument("--batch-size", type=c.int_at_least(1), default=None,
                   help="default: 128 on MNIST, 32 with --data, 10 with --teaching")
    g.add_argument("--early-stopping", metavar="PATIENCE", type=c.int_at_least(0), default=None,
                   help="stop after PATIENCE epochs without a better loss on the held-out rows (the "
                        "training loss with --validation-split 0); keep the best weights")
    g.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    g.add_argument("--threads", type=c.int_at_least(0), default=None, help="compiled kernels' threads (0: all cores)")
    g.add_argument("--seed", type=c.int_at_least(0), default=0, help="weights, dropout, shuffling, split")
    g = p.add_argument_group("output")
    g.add_argument("--output", "-o", metavar="FILE", default=default_output,
                   help="where to write the model (safetensors)"
                        + (f" (default: {default_output})" if default_output else " (default: not saved)"))
    g.add_argument("--plot", metavar="FILE", help="write the loss and accuracy curves there (needs matplotlib)")
    c.add_common(p)


def _activations():
    from .._engine.activations import ACTIVATIONS
    return [a for a in ACTIVATIONS if a != "softmax"]


def _optimizers():
    from ..nn.optimizers import _OPTIMIZER_NAMES
    return sorted(_OPTIMIZER_NAMES)


def _plotter():
    """fastnn.plot_history, or a CLIError naming what is missing (checked before training)."""
    import fastnn
    try:
        plot = getattr(fastnn, "plot_history")
    except (AttributeError, ImportError):
        raise c.CLIError("--plot needs fastnn.plot_history, which this version of fastnn does not have") from None
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:
        raise c.CLIError("--plot needs matplotlib: pip install matplotlib (or fastnn[plot])")
    return plot


class _Where(Callback):
    """Which epoch is running, and how many are done (for the Ctrl-C message)."""

    _abstract = True  # the command line's own: not a class model files may name

    def __init__(self):
        self.running, self.done = None, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.running = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.running, self.done = None, self.done + 1


def _load(args):
    """(training Data, MNIST's test set or None)."""
    if args.data is None:
        train = c.read_mnist("train", args.dtype, args.limit)
        test = c.read_mnist("test", args.dtype, args.limit)
        return train, test
    data = c.read_data(args.data, args.target)
    if args.limit:
        data.X, data.y = data.X[:args.limit], data.y[:args.limit]
    return data, None


def _split(data, fraction, seed, what=None):
    """(train, validation) rows, drawn at random by seed; `what` names the fraction in errors."""
    n = len(data.X)
    n_val = int(round(n * fraction))
    if fraction > 0 and n_val == 0:
        n_val = 1
    if n_val >= n:
        raise c.DataError(f"{what or f'--validation-split {fraction:g}'} leaves no training rows out of {n}")
    order = np.random.default_rng(seed).permutation(n)
    pick = lambda rows: c.Data(data.X[rows], data.y[rows], data.source, data.features, data.target)  # noqa: E731
    return pick(order[n_val:]), (pick(order[:n_val]) if n_val else None)


def _network(args, task, n_out):
    import fastnn
    teaching = args.teaching
    hidden = args.hidden if args.hidden is not None else ([30] if teaching else [256, 128])
    act = args.activation or ("sigmoid" if teaching else "relu")
    layers = []
    for w in hidden:
        if args.batch_norm:
            layers += [fastnn.Dense(w), fastnn.BatchNorm(), fastnn.Activation(act)]
        else:
            layers.append(fastnn.Dense(w, activation=act))
        if args.dropout:
            layers.append(fastnn.Dropout(args.dropout))
    layers.append(fastnn.Dense(n_out, activation="sigmoid" if teaching else "identity"))
    model = fastnn.Sequential(layers, dtype=args.dtype, seed=args.seed)
    opt = args.optimizer or ("sgd" if teaching else "adam")
    lr = args.lr if args.lr is not None else (3.0 if teaching else None)
    kwargs = {} if lr is None else {"lr": lr}
    loss = "mse" if teaching or task == "regression" else "cross_entropy"
    model.compile(opt, loss=loss, **kwargs)
    return model


def run(args):
    import fastnn
    from ..files import model_file

    if args.data is None and (args.target or args.task != "auto"):
        raise c.UsageError("--target and --task go with --data")
    if args.teaching and args.task == "regression":
        raise c.UsageError("--teaching trains a classifier; it cannot go with --task regression")
    c.select_backend(args)
    if args.threads is not None:
        fastnn.set_num_threads(args.threads)
    plot = _plotter() if args.plot else None
    if plot is not None:  # before training, as --output below
        from ..plots import _format
        c.check_output_folder("--plot", args.plot, "plot")
        try:
            _format(args.plot)
        except ValueError as exc:
            raise c.UsageError(f"--plot: {exc}") from None
    if args.output:
        c.check_output_folder("--output", args.output, "model")
    inputs = [("data file", args.data)]
    if args.data is None:  # MNIST's files, wherever load_mnist may read them
        from ..datasets import MNIST_FILES, mnist_search_path
        inputs = [("MNIST file", os.path.join(d, name)) for _, d in mnist_search_path() for name in MNIST_FILES]
    c.refuse_same_file("--output", args.output, inputs + [("--plot file", args.plot)])
    c.refuse_same_file("--plot", args.plot, inputs)

    # data
    train, held = _load(args)
    task = "classification" if args.data is None else c.infer_task(train.y, args.task)
    if task == "classification":
        if train.y.ndim != 1:
            raise c.DataError(f"{train.source}: a classifier needs one label per row; y has shape {train.y.shape}")
        if args.data is None:
            classes, train_t = list(range(10)), train.y
        else:
            classes, train_t = c.encode_classes(train.y)
        if len(classes) < 2:
            raise c.DataError(f"{train.source}: the target has a single class {classes}; nothing to learn")
    else:
        classes, train_t = None, c.numeric_labels(train.y)
    n_out = len(classes) if classes is not None else (1 if train_t.ndim == 1 else train_t.shape[1])
    # early stopping picks weights on held-out training rows, never on the MNIST test set that
    # the accuracy is then reported on
    split = (args.validation_split if args.validation_split is not None else
             0.2 if args.data else 0.1 if args.early_stopping is not None else 0.0)
    train_X = train.X
    val = None
    if split:
        implicit = None if args.validation_split is not None else (
            f"holding out {split:g} of the rows (--validation-split's default"
            + (" with --early-stopping)" if args.data is None else ")"))
        rows, val_rows = _split(c.Data(train.X, train_t, train.source), split, args.seed, implicit)
        train_X, train_t, val = rows.X, rows.y, (val_rows.X, val_rows.y)
    elif held is not None:
        val = (held.X, held.y)  # MNIST validates on its test set, as the main job always did
    if held is not None:
        report, report_name = (held.X, held.y), "test"
    elif val is not None:
        report, report_name = val, "validation"
    else:
        report, report_name = (train_X, train_t), "training"
    what = (f"classification, {len(classes)} classes" if task == "classification" else
            f"regression, {n_out} output{'s' if n_out > 1 else ''}")
    if task == "classification" and args.data is not None:
        what += f" ({', '.join(c.format_label(x) for x in classes[:10])}{', ...' if len(classes) > 10 else ''})"
        # whole numbers as a numeric target (a price in dollars) make many classes of few rows
        if len(classes) > 20 and np.median(np.bincount(train_t)) < 5:
            what += " - many classes of few rows: is the target continuous? --task regression"
    target = f", target {train.target!r}" if train.target else ""
    print(f"data: {train.source}: {len(train.X)} rows, {train.X.shape[1]} features{target}: {what}", flush=True)

    # model
    try:
        model = _network(args, task, n_out)
    except (ValueError, TypeError) as exc:
        raise c.UsageError(str(exc)) from None
    one_hot = bool(args.teaching)
    dataset = {"source": train.source, "task": task, "target": train.target, "features": train.features,
               "classes": classes, "one_hot": one_hot}

    def targets(t):
        return np.eye(n_out, dtype=args.dtype)[t] if one_hot else t

    epochs = args.epochs or (10 if args.teaching else 3 if args.data is None else 20)
    batch = args.batch_size or (10 if args.teaching else 128 if args.data is None else 32)
    where = _Where()
    callbacks = [where]
    fit_val = None if val is None else (val[0], targets(val[1]))
    if args.early_stopping is not None:
        callbacks.append(fastnn.EarlyStopping(monitor="val_loss" if split else "loss",
                                              patience=args.early_stopping, restore_best_weights=True))
    try:
        model.build(train_X.shape[1])
    except ValueError as exc:
        raise c.UsageError(str(exc)) from None
    except MemoryError as exc:
        raise c.CLIError(f"the network does not fit in memory: {exc}") from None
    model.summary(print_fn=lambda s: print(s, flush=True))
    print(f"training: {epochs} epoch{'s' if epochs > 1 else ''}, batch {batch}, {len(train_X)} rows"
          + (f", validating on {len(val[0])} {'test' if split == 0 else 'held-out'} rows" if val else "")
          + f", {fastnn.get_num_threads()} thread(s)", flush=True)
    t0 = time.perf_counter()
    try:
        history = model.fit(train_X, targets(train_t), epochs=epochs, batch_size=batch,
                            validation_data=fit_val, verbose=1, callbacks=callbacks)
    except KeyboardInterrupt:
        if where.running is None:
            at = f"after epoch {where.done} of {epochs}" if where.done else "before the first epoch"
        else:
            at = f"during epoch {where.running + 1} of {epochs}, after {where.done} complete epoch(s)"
        raise c.Interrupted(f"interrupted (Ctrl-C) {at}; nothing was written") from None
    except (ValueError, TypeError, fastnn.NonFiniteError) as exc:
        raise c.DataError(f"training failed: {exc}") from None
    seconds = time.perf_counter() - t0

    # report
    m = c.Model(model, {"kind": "Sequential", "dataset": dataset}).metrics(*report)
    m.pop("predictions", None)
    stopped = ""
    if history.stopped_early:
        stopped = f" (early stopping after epoch {history.epoch[-1] + 1}; best weights kept)"
    best = min(history["time"])
    print(f"{report_name} {c.format_metrics(m)}  [{len(report[0])} rows]{stopped}", flush=True)
    print(f"time {seconds:.1f} s for {len(history.epoch)} epoch(s); best epoch {best:.3f} s "
          f"({len(train_X) / best:,.0f} samples/s)", flush=True)

    # files
    if args.output:
        replaced = os.path.isfile(args.output)
        try:
            model_file.save(model, args.output, extra={"dataset": dataset})
        except KeyboardInterrupt:
            raise c.Interrupted(f"interrupted (Ctrl-C) while writing {args.output}; it was not written") from None
        except OSError as exc:
            raise c.DataError(f"cannot write the model to {args.output}: {exc}") from None
        print(f"model written to {args.output}" + (" (it replaced the file there)" if replaced else ""), flush=True)
    else:
        print("model not saved (give --output FILE to keep it)", flush=True)
    if plot is not None:
        try:
            plot(history, args.plot)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # the model is written: say why the plot is not
            raise c.CLIError(f"cannot write the plot {args.plot}: {type(exc).__name__}: {exc}") from None
        print(f"curves written to {args.plot}", flush=True)
    return 0

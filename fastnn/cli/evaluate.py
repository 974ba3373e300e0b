"""fastnn evaluate: a saved model's loss and accuracy (or R² and RMSE) on labelled data."""
import numpy as np

from . import _common as c

NAME = "evaluate"
HELP = "loss and accuracy of a saved model on labelled data (MNIST's test set by default)"
DESCRIPTION = """\
Evaluate a saved model on DATA: a CSV file with a header row holding the model's feature columns
and its target column, or a .npz archive with arrays X and y. Without DATA, on MNIST's test set.
Prints the loss and the accuracy with a confusion matrix (classifiers), or the loss, R² and RMSE
(regressions)."""
EPILOG = """\
examples:
  fastnn evaluate model.safetensors                 # on MNIST's test set
  fastnn evaluate iris.safetensors iris_test.csv
  fastnn evaluate model.safetensors data.npz --limit 1000"""

MAX_CONFUSION = 30  # classes; beyond that the matrix is not printed


def add_arguments(p):
    p.add_argument("model", metavar="MODEL", help="a model file written by fastnn train (or model.save)")
    p.add_argument("data", metavar="DATA", nargs="?", help="CSV (header row) or .npz (X, y); default: MNIST's test set")
    p.add_argument("--target", metavar="COLUMN",
                   help="the CSV's target column (default: the one the model was trained on, else the last)")
    p.add_argument("--limit", metavar="N", type=c.int_at_least(1), help="use only the first N rows")
    c.add_common(p)


def confusion(true, pred, classes):
    """The confusion matrix as text: rows true labels, columns predicted labels."""
    k = len(classes)
    m = np.bincount(true * k + pred, minlength=k * k).reshape(k, k)
    # a label's control characters (a newline) escaped, as repr writes them: one line a row
    names = [c.format_label(x) for x in classes]
    names = [repr(s)[1:-1] if any(ch < " " for ch in s) else s for s in names]
    w = max(max(len(s) for s in names), len(str(m.max())), 4)
    lines = [" " * w + "  " + " ".join(f"{s:>{w}}" for s in names)]
    lines += [f"{names[i]:>{w}}  " + " ".join(f"{v:>{w}d}" for v in m[i]) for i in range(k)]
    return "\n".join(lines)


def run(args):
    c.select_backend(args)
    model = c.open_model(args.model)
    data = model.read(args.data, need_target=True, target=args.target)
    if args.limit:
        data.X, data.y = data.X[:args.limit], data.y[:args.limit]
    where = args.data or "MNIST's test set"
    t = model.targets(data, where)
    m = model.metrics(data.X, t)
    pred = m.pop("predictions", None)
    what = model.task + (f", {len(model.classes)} classes" if model.classes else "")
    print(f"model: {args.model} ({model.kind}, {what})")
    print(f"data: {where}: {len(data.X)} rows")
    print(c.format_metrics(m))
    if pred is not None:
        if len(model.classes) <= MAX_CONFUSION:
            print("confusion matrix (rows: true label, columns: predicted label):")
            print(confusion(t, pred, model.classes))
        else:
            print(f"(confusion matrix not shown: {len(model.classes)} classes)")
    return 0

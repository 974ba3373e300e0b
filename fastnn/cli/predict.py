"""fastnn predict: a saved model's predictions for each row of a data file, as CSV."""
import csv
import io
import os
import stat
import sys

import numpy as np

from . import _common as c

NAME = "predict"
HELP = "predict each row of a CSV / .npz / .npy file with a saved model (CSV out, original labels)"
DESCRIPTION = """\
Predict every row of DATA (a CSV file with a header row, a .npz archive with an array X, or a .npy
array) and write CSV: a header, then one line per row with the predicted label, in the labels the
model was trained on (or the predicted value, for a regression). A CSV's feature columns are picked by the
names the model was trained on; its target column, when present, is ignored (blank cells
included). --proba adds one column of probability per class. An output named *.npy gets the
predictions as one NumPy array (labels as the model's, text as a fixed-width string array), one
named *.npz the arrays 'prediction' and, with --proba, 'proba' and 'classes'; np.load reads
either without allow_pickle. The output cannot be MODEL or DATA."""
EPILOG = """\
examples:
  fastnn predict iris.safetensors new_flowers.csv
  fastnn predict iris.safetensors new_flowers.csv --proba -o predictions.csv
  fastnn predict model.safetensors digits.npz | head"""


def add_arguments(p):
    p.add_argument("model", metavar="MODEL", help="a model file written by fastnn train (or model.save)")
    p.add_argument("data", metavar="DATA", help="CSV (header row), .npz (array X) or .npy (X)")
    p.add_argument("--proba", action="store_true", help="also write each class's probability (classifiers)")
    p.add_argument("-o", "--output", metavar="OUT.csv", help="write there (atomically) instead of to standard output (-: standard output); "
                   "*.npy and *.npz: NumPy arrays")
    p.add_argument("--limit", metavar="N", type=c.int_at_least(1), help="predict only the first N rows")
    c.add_common(p)


def _fmt(x):
    return format(float(x), ".9g")


def table(model, X, proba):
    """The header and the rows, as lists of strings."""
    out = model.indices(X)
    name = model.target or "prediction"
    if model.task == "classification":
        labels = [c.format_label(x) for x in model.classes]
        header = [name]
        rows = [[labels[i]] for i in out.tolist()]
        if proba:
            P = model.proba(X)
            header += labels
            rows = [r + [_fmt(p) for p in ps] for r, ps in zip(rows, P.tolist())]
        return header, rows
    out = np.asarray(out).reshape(len(X), -1)
    if model.task == "multilabel":
        header = [f"output_{j}" for j in range(out.shape[1])]
        rows = [[str(int(v)) for v in r] for r in out.tolist()]
        if proba:
            header += [f"proba_{j}" for j in range(out.shape[1])]
            rows = [r + [_fmt(p) for p in ps] for r, ps in zip(rows, model.proba(X).tolist())]
        return header, rows
    header = [name] if out.shape[1] == 1 else [f"{name}_{j}" for j in range(out.shape[1])]
    return header, [[_fmt(v) for v in r] for r in out.tolist()]


def arrays(model, X, proba):
    """{'prediction': ...} and, with proba, 'proba' (and 'classes' for a classifier): the .npy and
    .npz outputs, labels as the model's (numbers, or text as a fixed-width string array)."""
    out = model.indices(X)
    if model.task == "classification":
        classes = np.asarray(model.classes)
        got = {"prediction": classes[np.asarray(out)]}
        if proba:
            got.update(proba=np.asarray(model.proba(X)), classes=classes)
        return got
    out = np.asarray(out).reshape(len(X), -1)
    if model.task == "multilabel":
        got = {"prediction": out.astype(np.int64)}
        if proba:
            got["proba"] = np.asarray(model.proba(X))
        return got
    return {"prediction": out[:, 0] if out.shape[1] == 1 else out}


def _is_stream(path):
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def run(args):
    c.select_backend(args)
    model = c.open_model(args.model)
    if args.proba and (model.task == "regression" or model.one_hot):
        model.proba(None)  # raises the UsageError that says why, before reading any data
    if args.output == "":
        raise c.UsageError("-o needs a file name (or - for standard output)")
    if args.output == "-":
        args.output = None
    ext = os.path.splitext(args.output)[1].lower() if args.output else ""
    stream = bool(args.output) and _is_stream(args.output)  # /dev/stdout into a pipe, a FIFO
    if args.output:
        c.refuse_same_file("-o", args.output, [("model file", args.model), ("data file", args.data)])
        if not stream:
            c.check_output_folder("-o", args.output, "predictions")
        if ext == ".npy" and args.proba:
            raise c.UsageError("--proba needs a CSV or .npz output: a .npy file holds one array, the predictions")
    data = model.read(args.data, need_target=False)
    X = data.X[:args.limit] if args.limit else data.X
    if ext in (".npy", ".npz"):
        got, buf = arrays(model, X, args.proba), io.BytesIO()
        if ext == ".npy":
            np.save(buf, got["prediction"], allow_pickle=False)
        else:
            np.savez(buf, **got)
        payload = buf.getvalue()
    else:
        header, rows = table(model, X, args.proba)
        text = io.StringIO()
        w = csv.writer(text, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        payload = text.getvalue().encode()
    if args.output:
        from ..files.atomic import atomic_write
        try:
            if stream:  # written as it is
                with open(args.output, "wb") as f:
                    f.write(payload)
            else:  # a file: all of it or none
                atomic_write(args.output, lambda f: f.write(payload))
        except OSError as exc:
            raise c.DataError(f"cannot write {args.output}: {exc}") from None
        # into a stream (/dev/stdout, a pipe) the line would join the predictions: stderr then
        print(f"{len(X)} predictions written to {args.output}",
              file=sys.stderr if stream else sys.stdout)
    else:
        sys.stdout.write(payload.decode())
    return 0

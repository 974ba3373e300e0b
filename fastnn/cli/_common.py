"""What the subcommands share: the errors and exit codes, an argparse parser whose errors are one
line, option types, reading data (CSV with a header row, .npz with X and y, MNIST), the `dataset`
document a model file carries, and loading a model file for prediction.

Exit codes: 0 done, 1 a data or model problem (DataError, ModelError), 2 a usage mistake
(UsageError, or argparse's own), 130 Ctrl-C. Each is one line on stderr; --debug adds the
traceback.

The `dataset` document. `fastnn train` saves a Sequential, whose outputs are class indices 0..k-1
(cross entropy) or values (mse). What those indices mean lives beside the model, in the file's
metadata under the key "dataset" (fastnn.files.model_file.save(..., extra=...)):

    {"source": "iris.csv" | "mnist", "task": "classification" | "regression",
     "target": column name or null, "features": [column names] or null,
     "classes": [original labels, strings or numbers, in index order] or null,
     "one_hot": true when the network was trained on one-hot targets with mse (--teaching)}

fastnn.load(path) ignores it and returns the plain Sequential; `fastnn evaluate` and `predict`
read it to map indices back to the original labels and to pick the feature columns by name. A
Sequential saved from Python has none: its classes are then 0..k-1. A scikit-learn estimator's
file (fastnn.MLPClassifier) carries its own classes_ and is used through the estimator.
"""
import argparse
import csv
import math
import os
import warnings

import numpy as np

from .._engine.validation import check_matrix

EXIT_DATA, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class CLIError(Exception):
    code = EXIT_DATA


class UsageError(CLIError):
    """A bad option value or combination: exit 2."""
    code = EXIT_USAGE


class DataError(CLIError):
    """A missing, unreadable or malformed data file, or data the model cannot take: exit 1."""


class ModelError(CLIError):
    """A missing, corrupt or hostile model file: exit 1."""


class Interrupted(CLIError):
    """Ctrl-C, with where it struck: exit 130."""
    code = EXIT_INTERRUPTED


# -- argparse ------------------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: 'fastnn train: error: ... (see fastnn train --help)'."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def add_common(p):
    p.add_argument("--backend", choices=["c", "python"], default=None,
                   help="compiled kernels (c, the default when built) or the NumPy oracle (python)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")


def int_at_least(low):
    def convert(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"{v} is below {low}")
        return v
    convert.__name__ = f"integer >= {low}"
    return convert


def fraction(text):
    """A float in [0, 1)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"{v:g} is not in [0, 1)")
    return v


def widths(text):
    """'256,128' -> [256, 128]; '' or 'none' -> [] (no hidden layer)."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        out = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of layer widths "
                                         f"such as 256,128") from None
    if any(w < 1 for w in out):
        raise argparse.ArgumentTypeError(f"{text!r}: layer widths must be positive")
    return out


def select_backend(args):
    if getattr(args, "backend", None):
        import fastnn
        try:
            fastnn.set_backend(args.backend)
        except (ValueError, ImportError, RuntimeError) as exc:
            raise UsageError(f"--backend {args.backend}: {exc}") from None


# -- data --------------------------------------------------------------------------------------------------
class Data:
    """Rows read from a file or MNIST: X (n, d) float, y (raw labels or values, or None),
    feature names (or None), target name (or None), and where it came from."""

    def __init__(self, X, y, source, features=None, target=None):
        self.X, self.y, self.source, self.features, self.target = X, y, source, features, target


def _check_exists(path, what):
    if not os.path.exists(path):
        raise DataError(f"{what} {path!r} does not exist")
    if os.path.isdir(path):
        raise DataError(f"{what} {path!r} is a directory, not a file")


def refuse_same_file(option, out, inputs):
    """UsageError when `out`, the file that `option` writes, is one of `inputs` ((what, path)
    pairs) by any name (a link, another spelling): writing it would replace a file being read."""
    if not out:
        return
    for what, path in inputs:
        if not path:
            continue
        try:
            same = os.path.samefile(out, path) if os.path.exists(out) and os.path.exists(path) else \
                os.path.realpath(out) == os.path.realpath(path)
        except (OSError, ValueError):
            same = False
        if same:
            raise UsageError(f"{option} {out!r} is the {what} {path!r}: writing there would replace it; "
                             f"choose another file")


def check_output_folder(option, out, what):
    """UsageError when `out`, the file `option` writes, is a folder; DataError when the folder it
    would be written in does not exist (`what`: what is written)."""
    if os.path.isdir(out):
        raise UsageError(f"{option} {out!r} is a directory")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise DataError(f"cannot write the {what} to {out}: its directory does not exist")


def _number(text):
    try:
        return float(text)
    except ValueError:
        return None


def read_csv(path, target=None, need_target=True, features=None, n_features=None):
    """A CSV file with a header row. target: the label column's name (default: the last column);
    need_target=False (predict) uses it when present. features: the columns to take, by name
    (a model's); otherwise every column but the target, which must be n_features columns when
    that is given (a model's width: checked before any cell is read). Cells are numbers; the
    target may hold any text."""
    _check_exists(path, "data file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [(i, [c.strip() for c in r]) for i, r in enumerate(csv.reader(f), 1) if any(c.strip() for c in r)]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except (OSError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read it as CSV: {exc}") from None
    if not rows:
        raise DataError(f"{path} is empty: a CSV file needs a header row, then one row per sample")
    (_, header), body = rows[0], rows[1:]
    if not body:
        raise DataError(f"{path} has a header row but no data rows")
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise DataError(f"{path}: the header row names column(s) {dup} more than once")
    for line, r in body:
        if len(r) != len(header):
            raise DataError(f"{path}, line {line}: {len(r)} fields, but the header row has {len(header)}")
    looks_numeric = any(_number(h) is not None for h in header)
    hint = " (the first row is read as the header: does the file have one?)" if looks_numeric else ""
    if target is not None and target not in header and need_target:
        raise DataError(f"{path}: no column named {target!r}; the columns are {header}{hint}")
    if target is None and need_target:
        target = header[-1]
    has_target = target in header
    if features is not None:
        missing = [c for c in features if c not in header]
        if missing:
            raise DataError(f"{path}: the model reads the columns {features}, but {missing} "
                            f"{'is' if len(missing) == 1 else 'are'} not among the file's {header}{hint}")
        cols = [header.index(c) for c in features]
    else:
        cols = [j for j, h in enumerate(header) if not (has_target and h == target)]
        if n_features is not None and cols and len(cols) != n_features:
            raise DataError(f"feature count mismatch: the model takes {n_features} features, {path} has "
                            f"{len(cols)} column(s)" + (f" besides the target {target!r}" if has_target else ""))
    if not cols:
        raise DataError(f"{path}: no feature columns besides the target {target!r}")
    cells = np.array([r for _, r in body], dtype=str)
    try:
        X = cells[:, cols].astype(np.float64)
    except ValueError:
        for line, r in body:
            for j in cols:
                if _number(r[j]) is None:
                    what = "an empty cell" if r[j] == "" else f"{r[j]!r}"
                    raise DataError(f"{path}, line {line}, column {header[j]!r}: {what} is not a "
                                    f"number (feature columns must be numeric)") from None
        raise
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise DataError(f"{path}, line {body[i][0]}, column {header[cols[j]]!r}: "
                        f"{body[i][1][cols[j]]!r} is not a finite number")
    y = None
    if has_target:
        y = cells[:, header.index(target)]
        empty = np.flatnonzero(y == "")
        if empty.size and not need_target:  # predict ignores it: blank labels are rows to predict
            y = None
        elif empty.size:
            raise DataError(f"{path}, line {body[int(empty[0])][0]}: the target column {target!r} is empty")
    return Data(X, y, os.path.basename(path), [header[j] for j in cols], target if has_target else None)


def read_npz(path, need_target=True):
    """A NumPy .npz archive holding X (n, d) and y (n,) or (n, k); y is optional for prediction."""
    _check_exists(path, "data file")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            if "X" not in keys or (need_target and "y" not in keys):
                raise DataError(f"{path}: a .npz data file holds arrays named X and y; this one has {keys}")
            X = z["X"]
            y = z["y"] if "y" in keys else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as exc:  # not a zip, truncated, object arrays (pickles)
        raise DataError(f"{path}: cannot read it as a .npz archive: {exc}") from None
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise DataError(f"{path}: X must be a 2-D numeric array, got {X.ndim}-D {X.dtype}")
    if y is not None:
        if y.ndim not in (1, 2) or len(y) != len(X):
            raise DataError(f"{path}: y must have one entry (or row) per row of X ({len(X)}); it has shape {y.shape}")
        if y.dtype.kind not in "biufUS":
            raise DataError(f"{path}: y must hold numbers or strings, not {y.dtype}")
    return Data(X, y, os.path.basename(path))


def read_npy(path, need_target=True):
    """A NumPy .npy file holding X alone (n, d): rows to predict."""
    _check_exists(path, "data file")
    if need_target:
        raise DataError(f"{path}: a .npy file holds X alone; targets come in a .npz (arrays X and y) "
                        f"or a CSV file")
    try:
        X = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # not .npy, truncated, object arrays (pickles)
        raise DataError(f"{path}: cannot read it as a .npy array: {exc}") from None
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise DataError(f"{path}: X must be a 2-D numeric array, got {X.ndim}-D {X.dtype}")
    return Data(X, None, os.path.basename(path))


def read_data(path, target=None, need_target=True, features=None, n_features=None):
    """CSV, .npz or (X alone, to predict) .npy, by the extension."""
    if path.lower().endswith(".npz"):
        return read_npz(path, need_target)
    if path.lower().endswith(".npy"):
        return read_npy(path, need_target)
    if path.lower().endswith((".csv", ".txt")):
        return read_csv(path, target, need_target, features, n_features)
    _check_exists(path, "data file")
    raise DataError(f"{path}: data files are .csv (with a header row), .npz (arrays X and y) or, to "
                    f"predict, .npy (X)")


def read_mnist(split, dtype="float32", limit=None):
    from ..datasets import load_mnist
    try:
        X, y = load_mnist(split, dtype, limit=limit)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load MNIST's {split} set: {exc}") from None
    return Data(X, y, "mnist")


# -- labels --------------------------------------------------------------------------------------------------
def _json_label(v):
    """A label as a JSON value: int, float or str."""
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return int(f) if f.is_integer() else f
    return str(v)


def numeric_labels(y):
    """y as float64 when every entry is a number (text included), else None."""
    if y.dtype.kind in "biuf":
        return y.astype(np.float64)
    try:
        return y.astype(np.float64)
    except ValueError:
        return None


def infer_task(y, task="auto"):
    """'classification' or 'regression' for the target y: regression when asked, or when y is
    numeric with a fractional value (or a 2-D float array); classification otherwise."""
    num = numeric_labels(y)
    if task == "regression":
        if num is None:
            raise DataError("--task regression needs a numeric target; this one holds text labels")
        return task
    if task == "classification":
        if y.ndim != 1:
            raise DataError(f"classification needs one label per row; y has shape {y.shape}")
        return task
    if y.ndim == 2:
        return "regression"
    if num is not None and not np.all(np.mod(num, 1) == 0):
        return "regression"
    return "classification"


def encode_classes(y):
    """(classes as JSON values in index order, indices): numeric labels sorted by value, text
    labels sorted as text."""
    num = numeric_labels(y)
    if num is not None:
        values, idx = np.unique(num, return_inverse=True)
        return [_json_label(v) for v in values], idx.astype(np.int64)
    values, idx = np.unique(y.astype(str), return_inverse=True)
    return [str(v) for v in values], idx.astype(np.int64)


def label_indices(y, classes, where):
    """Map raw labels y onto the indices of `classes` (a model's); an unknown label is an error."""
    numeric = all(not isinstance(c, str) for c in classes)
    keys = numeric_labels(y) if numeric else y.astype(str)
    if keys is None:
        raise DataError(f"{where}: the labels are text, but the model's classes are numbers {classes[:10]}")
    lookup = {(float(c) if numeric else c): i for i, c in enumerate(classes)}
    out = np.empty(len(keys), np.int64)
    for n, k in enumerate(keys.tolist()):
        i = lookup.get(k)
        if i is None:
            raise DataError(f"{where}, row {n + 1}: label {_json_label(k)!r} is not one of the model's "
                            f"classes {classes[:20]}")
        out[n] = i
    return out


def format_label(c):
    return c if isinstance(c, str) else repr(c) if isinstance(c, float) else str(c)


# -- model files ---------------------------------------------------------------------------------------------
_TASKS = ("classification", "regression", "multilabel")


def load_file(path):
    """(object, metadata) of the model file at `path`; any problem with it is a ModelError."""
    from ..files import model_file
    if not os.path.exists(path):
        raise ModelError(f"model file {path!r} does not exist")
    if os.path.isdir(path):
        raise ModelError(f"model file {path!r} is a directory")
    try:
        return model_file.load(path, with_metadata=True)
    except ImportError as exc:  # an estimator's file without scikit-learn
        raise ModelError(f"{path}: {exc}") from None
    except (ValueError, TypeError, OSError) as exc:
        msg = str(exc)
        raise ModelError(msg if msg.startswith(path) else f"{path}: {msg}") from None


def open_model(path):
    """The model file at `path` as a Model."""
    return Model(*load_file(path), path)


class Model:
    """A model (a Sequential, or a scikit-learn estimator holding one) with what its outputs
    mean: task, classes, feature and target names, from its `dataset` document when it has one."""

    def __init__(self, obj, meta, path="the model"):
        from ..nn.model import Sequential
        self.obj, self.meta, self.path = obj, meta, path
        self.kind = self.meta["kind"]
        self.estimator = not isinstance(self.obj, Sequential)
        seq = self.obj.model_ if self.estimator and hasattr(self.obj, "__dict__") and \
            "model_" in self.obj.__dict__ else self.obj
        if not isinstance(seq, Sequential) or not seq.built:
            raise ModelError(f"{path}: the {self.kind} in this file has not been trained")
        self.sequential = seq
        self.n_features = seq._built.plan.n_inputs
        self.n_outputs = seq._built.plan.n_outputs
        from .._engine import losses
        self.loss = losses.get(seq.loss)
        doc = None if self.estimator else self.meta.get("dataset")
        self.dataset = self._check_dataset(doc) if doc is not None else None
        if self.estimator:
            is_clf = hasattr(self.obj, "classes_")
            # a multi-label classifier: one sigmoid output per label, predictions are 0/1 rows
            multilabel = is_clf and self.loss.targets == "probabilities" and self.n_outputs > 1
            self.task = "multilabel" if multilabel else "classification" if is_clf else "regression"
            self.classes = [_json_label(c) for c in self.obj.classes_] if is_clf and not multilabel else None
            names = getattr(self.obj, "feature_names_in_", None)
            self.features = None if names is None else [str(f) for f in names]
            self.target, self.one_hot = None, False
        elif self.dataset is not None:
            d = self.dataset
            self.task, self.classes, self.one_hot = d["task"], d["classes"], d["one_hot"]
            self.features, self.target = d["features"], d["target"]
        else:
            self.task = ("classification" if self.loss.targets == "labels" else
                         "multilabel" if self.loss.targets == "probabilities" else "regression")
            self.classes = list(range(self.n_outputs)) if self.task == "classification" else None
            self.features = self.target = None
            self.one_hot = False

    def _check_dataset(self, d):
        """The `dataset` document, every value checked against the model (it may be hostile)."""
        def bad(problem):
            return ModelError(f"{self.path}: the 'dataset' metadata {problem}")
        keys = {"source", "task", "target", "features", "classes", "one_hot"}
        if not isinstance(d, dict) or set(d) != keys:
            raise bad(f"must be an object with the keys {sorted(keys)}")
        if d["task"] not in ("classification", "regression"):
            raise bad(f"names the task {d['task']!r}")
        if not isinstance(d["one_hot"], bool) or not (d["target"] is None or isinstance(d["target"], str)):
            raise bad("has a bad 'one_hot' or 'target'")
        f = d["features"]
        if f is not None and (not isinstance(f, list) or len(f) != self.n_features
                              or not all(isinstance(x, str) for x in f) or len(set(f)) != len(f)):
            raise bad(f"must name {self.n_features} distinct feature columns")
        c = d["classes"]
        if d["task"] == "classification":
            ok_loss = self.loss.targets == ("real" if d["one_hot"] else "labels")
            if (not isinstance(c, list) or len(c) != self.n_outputs or not ok_loss
                    or not all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in c)
                    or len({format_label(x) for x in c}) != len(c)
                    or (any(isinstance(x, str) for x in c) and not all(isinstance(x, str) for x in c))):
                raise bad(f"must list {self.n_outputs} distinct class labels (all text or all numbers) "
                          f"for a {self.loss.name} model")
        elif c is not None or self.loss.targets != "real" or d["one_hot"]:
            raise bad("describes a regression, but the model is not one")
        return d

    # -- data for this model ----------------------------------------------------------------------------
    def read(self, path, need_target, target=None):
        """DATA for this model (MNIST's test set when path is None), its features checked."""
        names = None
        if path is None:
            data = read_mnist("test", self.sequential.dtype.name)
        else:
            names = self.features if path.lower().endswith((".csv", ".txt")) else None
            data = read_data(path, target or self.target, need_target, features=names,
                             n_features=self.n_features)
        if data.X.shape[1] != self.n_features:
            where = "MNIST's test set (give DATA)" if path is None else path
            raise DataError(f"feature count mismatch: the model takes {self.n_features} features, "
                            f"{where} has {data.X.shape[1]}")
        try:  # the model's own checks (empty, NaN, beyond its dtype), as a data error naming the file
            check_matrix(data.X, "X", self.sequential.dtype)
        except ValueError as exc:
            raise DataError(f"{'MNIST' if path is None else path}: {exc}") from None
        # the columns were picked by the names the estimator was fitted with (a CSV): its warning
        # that an array has no feature names is noise then, and worth seeing otherwise
        self.by_name = names is not None
        return data

    def targets(self, data, where):
        """The data's targets in the model's encoding: class indices, or values."""
        if data.y is None:
            raise DataError(f"{where} has no target column" + (f" {self.target!r}" if self.target else ""))
        if self.task == "classification":
            if data.y.ndim != 1:
                raise DataError(f"{where}: a classifier's targets are one label per row; y has shape {data.y.shape}")
            return label_indices(data.y, self.classes, where)
        y = numeric_labels(data.y)
        if self.task == "multilabel":
            k = self.n_outputs
            if y is not None and y.ndim == 1 and k == 1:  # one sigmoid output: a column of 0/1
                y = y[:, None]
            if y is None or y.ndim != 2 or y.shape[1] != k or not ((y >= 0) & (y <= 1)).all():
                raise DataError(f"{where}: a multi-label model's targets are rows of {k} values in [0, 1] "
                                f"(a .npz y of shape (n, {k})); got " +
                                ("text" if y is None else f"shape {y.shape}" if y.ndim != 2 or y.shape[1] != k
                                 else "NaN" if np.isnan(y).any() else "values outside [0, 1]"))
            return y
        if y is None:
            raise DataError(f"{where}: the model is a regression, but the target holds text")
        return y

    # -- predictions ------------------------------------------------------------------------------------------
    def indices(self, X):
        """Class indices (classification), values (regression) or 0/1 rows (multilabel)."""
        if self.estimator:
            out = self._estimator_call(self.obj.predict, X)
            if self.task == "classification":
                return label_indices(np.asarray(out), self.classes, "the estimator's predictions")
            return np.asarray(out, np.float64)
        out = self.sequential.predict(X)
        return out.argmax(axis=1) if self.one_hot else out

    def proba(self, X):
        """Class probabilities (multi-label: each output's)."""
        if self.task == "regression":
            raise UsageError(f"--proba: {self.path} is a regression")
        if self.one_hot:
            raise UsageError(f"--proba: {self.path} was trained on one-hot targets with mse (--teaching): "
                             f"its outputs are not probabilities")
        return np.asarray(self._estimator_call(self.obj.predict_proba, X), np.float64)

    def _estimator_call(self, method, X):
        """An estimator fitted on a DataFrame warns that X (an array) has no feature names; the
        CLI has already picked the CSV's columns by those names, so that warning is noise."""
        with warnings.catch_warnings():
            if getattr(self, "by_name", False):
                warnings.filterwarnings("ignore", message="X does not have valid feature names")
            return method(X)

    def metrics(self, X, t):
        """{'loss', 'accuracy'} (classification) or {'loss', 'r2', 'rmse'} (regression) on X with
        targets t in the model's encoding."""
        out = {}
        if self.task == "classification":
            pred = self.indices(X)
            if self.estimator:
                p = self.proba(X)
                out["loss"] = float(-np.mean(np.log(np.clip(p[np.arange(len(t)), t], 1e-15, 1))))
            else:
                y = np.eye(self.n_outputs, dtype=X.dtype)[t] if self.one_hot else t
                out["loss"] = float(self.sequential.evaluate(X, y)["loss"])
            out["accuracy"] = float(np.mean(pred == t))
            out["predictions"] = pred
            return out
        if self.task == "multilabel":
            return {k: float(v) for k, v in self.sequential.evaluate(X, t).items()}
        pred = np.asarray(self.indices(X), np.float64).reshape(len(X), -1)
        t2 = np.asarray(t, np.float64).reshape(len(X), -1)
        if pred.shape != t2.shape:
            raise DataError(f"the model predicts {pred.shape[1]} value(s) per row, the targets have {t2.shape[1]}")
        if not self.estimator:
            out["loss"] = float(self.sequential.evaluate(X, t2 if self.n_outputs > 1 else t2[:, 0])["loss"])
        sse = float(((pred - t2) ** 2).sum())
        sst = float(((t2 - t2.mean(axis=0)) ** 2).sum())
        out["r2"] = 1.0 - sse / sst if sst > 0 else float("nan")
        out["rmse"] = math.sqrt(sse / t2.size)
        return out


def format_metrics(m, prefix=""):
    names = {"accuracy": "accuracy", "r2": "R²", "rmse": "RMSE", "loss": "loss"}
    return "  ".join(f"{prefix}{name} {m[k]:.4f}" for k, name in names.items() if k in m)

"""The command line end to end (fastnn/cli/): `python -m fastnn ...` in subprocesses on tiny data
written into tmp_path. A user's mistake is one line on stderr, exit status 2 (usage) or 1 (data
or model), never a traceback; the model file carries the class labels, so predictions come back
in the user's labels."""
import csv
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastnn

SRC = str(Path(fastnn.__file__).resolve().parent.parent)  # the fastnn these tests import
SPECIES = ["setosa", "versicolor", "virginica"]


def _env():
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("FASTNN_ARCH", None)
    return env


def start(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "fastnn", *map(str, args)], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(p, timeout=120):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def cli(args, cwd):
    return finish(start(args, cwd))


def cli_many(arg_lists, cwd):
    """Run several commands at once (they are independent); their (status, out, err) in order."""
    procs = [start(a, cwd) for a in arg_lists]
    return [finish(p) for p in procs]


def one_line_error(err):
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# -- data --------------------------------------------------------------------------------------------------
def _species(X):
    return (X[:, 0] > 0.3).astype(int) + (X[:, 1] > 0).astype(int)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A directory with flowers.csv (text labels, target not the last column), digits.csv
    (numeric labels 3, 5, 7), wave.npz (a regression) and flowers.safetensors trained on the first."""
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 4)).round(3)
    labels = np.array(SPECIES)[_species(X)]
    write_csv(d / "flowers.csv", ["sepal", "width", "species", "petal", "depth"],
              [[a, b, s, c, e] for (a, b, c, e), s in zip(X.tolist(), labels)])
    write_csv(d / "digits.csv", ["x0", "x1", "label"],
              [[a, b, [3, 5, 7][k]] for (a, b), k in zip(X[:, :2].tolist(), _species(X))])
    np.savez(d / "wave.npz", X=X, y=X @ np.array([0.5, -1.0, 0.25, 0.0]) + 0.3)
    status, out, err = cli(["train", "--data", "flowers.csv", "--target", "species", "--epochs", "40",
                            "--hidden", "32", "--lr", "0.01", "-o", "flowers.safetensors"], d)
    assert status == 0, err
    return d, out


# -- the round trip ----------------------------------------------------------------------------------------
def test_train_reports_and_writes_the_model(work):
    d, out = work
    assert "data: flowers.csv: 240 rows, 4 features, target 'species': classification, 3 classes " \
           "(setosa, versicolor, virginica)" in out  # the header row is not a data row
    acc = float(re.search(r"^validation accuracy (\S+)  loss \S+  \[48 rows\]$", out, re.M)[1])
    assert acc > 0.8
    assert re.search(r"^time \S+ s for 40 epoch\(s\)", out, re.M)
    assert out.rstrip().endswith("model written to flowers.safetensors")
    model = fastnn.load(d / "flowers.safetensors")  # a plain Sequential for Python users
    assert isinstance(model, fastnn.Sequential) and model.epochs_trained == 40
    _, meta = fastnn.files.load(d / "flowers.safetensors", with_metadata=True)
    assert meta["dataset"] == {"source": "flowers.csv", "task": "classification", "target": "species",
                               "features": ["sepal", "width", "petal", "depth"], "classes": SPECIES,
                               "one_hot": False}


def test_predict_writes_into_a_pipe_given_as_the_output(work):
    """The hostile tester's finding: -o /dev/stdout into a pipe failed, as atomic_write made its
    temporary file beside /proc/PID/fd/pipe:[N]; a stream is written as it is."""
    d, _ = work
    status, out, err = cli(["predict", "flowers.safetensors", "flowers.csv", "-o", "/dev/stdout"], d)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "species" and set(lines[1:241]) <= set(SPECIES) and len(lines) == 241
    assert err.strip() == "240 predictions written to /dev/stdout"  # not a row of the CSV
    (s2, out2, e2), (s3, _, e3) = cli_many([["predict", "flowers.safetensors", "flowers.csv", "-o", "-"],
                                            ["predict", "flowers.safetensors", "flowers.csv", "-o", ""]], d)
    assert s2 == 0 and out2 == out and not (d / "-").exists(), e2
    assert s3 == 2 and "-o needs a file name" in one_line_error(e3)


def test_evaluate_predict_info_round_trip(work):
    d, _ = work
    (s1, ev, e1), (s2, pred, e2), (s3, _, e3), (s4, info, e4) = cli_many([
        ["evaluate", "flowers.safetensors", "flowers.csv"],
        ["predict", "flowers.safetensors", "flowers.csv"],
        ["predict", "flowers.safetensors", "flowers.csv", "--proba", "-o", "proba.csv"],
        ["info", "flowers.safetensors"]], d)
    assert (s1, s2, s3, s4) == (0, 0, 0, 0), (e1, e2, e3, e4)
    # evaluate: accuracy and a confusion matrix in the original labels
    acc = float(re.search(r"^accuracy (\S+)  loss (\S+)$", ev, re.M)[1])
    matrix = ev.split("confusion matrix (rows: true label, columns: predicted label):\n")[1].splitlines()
    assert matrix[0].split() == SPECIES
    counts = np.array([[int(v) for v in row.split()[1:]] for row in matrix[1:]])
    assert [row.split()[0] for row in matrix[1:]] == SPECIES
    assert counts.sum() == 240 and counts.trace() / 240 == pytest.approx(acc, abs=1e-4)
    # predict: a header, then one original label per row, agreeing with evaluate
    lines = pred.splitlines()
    assert lines[0] == "species" and len(lines) == 241
    with open(d / "flowers.csv") as f:
        truth = [r["species"] for r in csv.DictReader(f)]
    assert set(lines[1:]) <= set(SPECIES)
    assert np.mean([p == t for p, t in zip(lines[1:], truth)]) == pytest.approx(acc, abs=1e-4)
    # --proba -o: the label, then one probability per class, rows summing to 1
    with open(d / "proba.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["species"] + SPECIES and len(rows) == 241
    P = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    assert np.allclose(P.sum(1), 1, atol=1e-5)
    assert [r[0] for r in rows[1:]] == lines[1:]
    assert [SPECIES[i] for i in P.argmax(1)] == lines[1:]
    # info: format version, data, summary, config, history
    assert "fastnn model format version 1" in info
    assert "trained on: flowers.csv, classification, target 'species', 3 classes (setosa, versicolor, " \
           "virginica), 4 features (sepal, width, petal, depth)" in info
    assert "Total params: 259" in info and '"class_name": "Adam"' in info
    history = info.split("history (last fit):\n")[1].splitlines()
    assert history[0].split() == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"]
    assert len(history) == 41 and history[-1].split()[0] == "40"


def test_numeric_labels_come_back_as_given_and_regression(work):
    d, _ = work
    trained = cli_many([["train", "--data", "digits.csv", "--epochs", "30", "--hidden", "16", "--lr", "0.01",
                         "-o", "digits.safetensors"],
                        ["train", "--data", "wave.npz", "--epochs", "60", "--hidden", "16", "--lr", "0.01",
                         "--early-stopping", "5", "-o", "wave.safetensors"],
                        ["train", "--data", "digits.csv", "--target", "x1", "--task", "regression", "--epochs",
                         "2", "--hidden", "8,4", "--activation", "tanh", "--batch-norm", "--dropout", "0.1",
                         "--optimizer", "rmsprop", "--lr", "0.002", "--batch-size", "16", "--dtype", "float64",
                         "--threads", "1", "--seed", "3", "--validation-split", "0.25", "-o", "opts.safetensors"]], d)
    assert [t[0] for t in trained] == [0, 0, 0], [t[2] for t in trained]
    assert "data: digits.csv: 240 rows, 2 features, target 'x1': regression, 1 output" in trained[2][1]
    assert "training: 2 epochs, batch 16, 180 rows, validating on 60 held-out rows, 1 thread(s)" in trained[2][1]
    (s1, pred, e1), (s2, ev, e2), (s3, values, e3), (s4, _, e4), (s5, info, e5) = cli_many([
        ["predict", "digits.safetensors", "digits.csv"],
        ["evaluate", "wave.safetensors", "wave.npz"],
        ["predict", "wave.safetensors", "wave.npz", "--limit", "5"],
        ["predict", "wave.safetensors", "wave.npz", "--proba"],
        ["info", "opts.safetensors"]], d)
    assert (s1, s2, s3, s5) == (0, 0, 0, 0), (e1, e2, e3, e5)
    for part in ("BatchNorm(", "Activation(activation='tanh')", "Dropout(rate=0.1)", "dtype: float64",
                 "optimizer: RMSprop(lr=0.002)", "2 features (x0, label)"):
        assert part in info, part
    lines = pred.splitlines()
    assert lines[0] == "label" and set(lines[1:]) <= {"3", "5", "7"} and len(set(lines[1:])) > 1
    r2 = float(re.search(r"^R² (\S+)  RMSE \S+  loss \S+$", ev, re.M)[1])
    assert r2 > 0.8
    assert values.splitlines()[0] == "prediction" and len(values.splitlines()) == 6
    assert [float(v) for v in values.splitlines()[1:]]
    assert s4 == 2 and one_line_error(e4) == "fastnn predict: error: --proba: wave.safetensors is a regression"


def test_a_whole_number_target_with_many_rare_values_gets_the_regression_hint(tmp_path):
    """A continuous target written as whole numbers (diabetes' 25.0 .. 346.0: 214 values in 442
    rows) trained as 214 classes without a word, because the hint needed more classes than rows / 2."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)).round(3)
    price = np.round(100 + 40 * X[:, 0] + 10 * rng.normal(size=300))  # about 130 distinct values
    common = rng.integers(0, 30, 300)  # 30 classes of about 10 rows: a classification
    write_csv(tmp_path / "price.csv", ["a", "b", "c", "price"], [list(r) + [p] for r, p in zip(X.tolist(), price)])
    write_csv(tmp_path / "kinds.csv", ["a", "b", "c", "kind"], [list(r) + [k] for r, k in zip(X.tolist(), common)])
    (s1, out1, e1), (s2, out2, e2) = cli_many(
        [["train", "--data", "price.csv", "--epochs", "1", "-o", "p.safetensors"],
         ["train", "--data", "kinds.csv", "--epochs", "1", "-o", "k.safetensors"]], tmp_path)
    assert (s1, s2) == (0, 0), (e1, e2)
    assert "many classes of few rows: is the target continuous? --task regression" in out1
    assert "30 classes" in out2 and "is the target continuous" not in out2


def test_help_has_examples(work):
    d, _ = work
    results = cli_many([[cmd, "--help"] for cmd in ("train", "evaluate", "predict", "info", "check")]
                       + [["--help"]], d)
    for status, out, err in results:
        assert status == 0 and "examples:" in out and err == ""


# -- mistakes: one line, exit 2 (usage) or 1 (data or model) ---------------------------------------------
def _hostile_files(d):
    """Model files a user might be handed: cut short, not a model, a class that is not fastnn's,
    a `dataset` document that lies about the classes."""
    from fastnn.files import safetensors
    src = (d / "flowers.safetensors").read_bytes()
    (d / "cut.safetensors").write_bytes(src[:len(src) // 2])
    (d / "notes.safetensors").write_bytes(b"these are my notes\n")
    tensors, meta = safetensors.read_file(d / "flowers.safetensors")
    evil = dict(meta, config=meta["config"].replace('"Dense"', '"os.system"', 1))
    safetensors.save_file(tensors, d / "evil.safetensors", evil)
    dataset = json.loads(meta["dataset"])
    safetensors.save_file(tensors, d / "liar.safetensors",
                          dict(meta, dataset=json.dumps(dict(dataset, classes=["a", "b"]))))


ERRORS = [  # (arguments, exit status, what the line says)
    (["train", "--data", "flowers.csv", "--target", "species", "--lr", "-1"], 2, "'lr' parameter of Adam"),
    (["train", "--hidden", "64,x"], 2, "argument --hidden: '64,x' is not a comma-separated list"),
    (["train", "--data", "flowers.csv", "--target", "species", "--hidden", "99999999999999999999"], 2,
     "a model of 799,999,999,999,999,999,995 parameters is more than an array can hold"),
    (["train", "--epochs", "0"], 2, "argument --epochs: 0 is below 1"),
    (["train", "--activation", "swish"], 2, "argument --activation: invalid choice: 'swish'"),
    (["train", "--validation-split", "1.5"], 2, "argument --validation-split: 1.5 is not in [0, 1)"),
    (["train", "--target", "species"], 2, "--target and --task go with --data"),
    (["evaluate"], 2, "the following arguments are required: MODEL"),
    (["frobnicate"], 2, "unknown command 'frobnicate'"),
    (["train", "--data", "missing.csv"], 1, "data file 'missing.csv' does not exist"),
    (["evaluate", "missing.safetensors", "flowers.csv"], 1, "model file 'missing.safetensors' does not exist"),
    (["train", "--data", "ragged.csv"], 1, "ragged.csv, line 3: 2 fields, but the header row has 3"),
    (["train", "--data", "words.csv", "--target", "y"], 1,
     "words.csv, line 4, column 'b': 'n/a' is not a number (feature columns must be numeric)"),
    (["train", "--data", "flowers.csv", "--target", "colour"], 1,
     "flowers.csv: no column named 'colour'; the columns are ['sepal', 'width', 'species', 'petal', 'depth']"),
    (["train", "--data", "flowers.csv"], 1, "column 'species': 'setosa' is not a number"),  # target: last
    (["evaluate", "cut.safetensors", "flowers.csv"], 1, "cut.safetensors: not a valid safetensors file"),
    (["info", "notes.safetensors"], 1, "notes.safetensors: not a valid safetensors file"),
    (["predict", "evil.safetensors", "flowers.csv"], 1, "'os.system', which is not a fastnn layer class"),
    (["info", "liar.safetensors"], 1, "the 'dataset' metadata must list 3 distinct class labels"),
    (["predict", "flowers.safetensors", "wide.npz"], 1,
     "feature count mismatch: the model takes 4 features, wide.npz has 5"),
    (["evaluate", "flowers.safetensors", "other_labels.csv"], 1,
     "other_labels.csv, row 2: label 'tulip' is not one of the model's classes"),
    (["predict", "flowers.safetensors", "pickle.npz"], 1, "pickle.npz: cannot read it as a .npz archive"),
    (["predict", "plain.safetensors", "flowers.csv"], 1,  # it was "'setosa' is not a number"
     "feature count mismatch: the model takes 4 features, flowers.csv has 5 column(s)"),
    (["evaluate", "plain.safetensors", "rows.npy"], 1, "rows.npy: a .npy file holds X alone; targets come in"),
    (["predict", "plain.safetensors", "pickle.npy"], 1, "pickle.npy: cannot read it as a .npy array"),
    (["predict", "plain.safetensors", "nan.npy"], 1, "nan.npy: X contains 1 NaN or infinite value(s)"),
    (["predict", "plain.safetensors", "empty.npy"], 1, "empty.npy: X is empty: 0 samples (need at least 1)"),
    (["predict", "plain.safetensors", "huge.npy"], 1,
     "huge.npy: X holds values beyond the range of float32 (at most 3.403e+38 in magnitude), this model's dtype"),
]


def test_mistakes_are_one_line_with_the_right_status(work):
    d, _ = work
    (d / "ragged.csv").write_text("a,b,y\n1,2,x\n3,4\n")
    (d / "words.csv").write_text("a,b,y\n1,2,u\n3,4,v\n5,n/a,u\n")
    write_csv(d / "other_labels.csv", ["sepal", "width", "species", "petal", "depth"],
              [[0, 0, "setosa", 0, 0], [1, 1, "tulip", 1, 1]])
    np.savez(d / "wide.npz", X=np.zeros((3, 5)))
    np.savez(d / "pickle.npz", X=np.array([{"a": 1}], dtype=object))
    np.save(d / "rows.npy", np.zeros((3, 4)))
    np.save(d / "nan.npy", np.array([[0, 1, np.nan, 2.0]]))
    np.save(d / "empty.npy", np.zeros((0, 4)))
    np.save(d / "huge.npy", np.full((2, 4), 1e300))
    np.save(d / "pickle.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    fastnn.Sequential([fastnn.Dense(3)]).compile("sgd", "cross_entropy").build(4).save(d / "plain.safetensors")
    _hostile_files(d)
    results = cli_many([args for args, _, _ in ERRORS], d)
    for (args, status, message), (got, out, err) in zip(ERRORS, results):
        line = one_line_error(err)
        assert (got, message in line) == (status, True), (args, got, line)
        assert line.startswith("fastnn"), line
    assert not [p.name for p in d.iterdir() if p.suffix == ".tmp" or p.name == "model.safetensors"]


def test_debug_shows_the_traceback(work):
    d, _ = work
    (d / "ragged2.csv").write_text("a,b,y\n1,2,x\n3,4\n")
    status, _, err = cli(["train", "--data", "ragged2.csv", "--debug"], d)
    assert status == 1 and err.startswith("Traceback") and "read_csv" in err
    assert err.strip().splitlines()[-1] == \
        "fastnn train: error: ragged2.csv, line 3: 2 fields, but the header row has 3"


def test_plot_writes_curves_or_says_why_not(work):
    d, _ = work
    status, out, err = cli(["train", "--data", "wave.npz", "--epochs", "2", "--hidden", "8",
                            "-o", "plotted.safetensors", "--plot", "curves.png"], d)
    try:
        can_plot = callable(getattr(fastnn, "plot_history", None)) and bool(importlib.util.find_spec("matplotlib"))
    except ImportError:
        can_plot = False
    if can_plot:
        assert status == 0, err
        assert "curves written to curves.png" in out and (d / "curves.png").stat().st_size > 0
    else:  # refused before training: nothing trained, nothing written
        assert status == 1 and "--plot needs" in one_line_error(err)
        assert not (d / "plotted.safetensors").exists()


def test_ctrl_c_stops_cleanly_and_writes_nothing(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "big.npz", X=rng.normal(size=(20000, 20)), y=rng.integers(0, 3, 20000))
    p = start(["train", "--data", "big.npz", "--epochs", "1000", "--hidden", "64",
               "-o", "stopped.safetensors"], tmp_path)
    for line in p.stdout:
        if line.startswith("epoch 2 "):
            break
    p.send_signal(signal.SIGINT)
    status, _, err = finish(p)
    assert status == 130
    line = one_line_error(err)
    assert re.fullmatch(r"fastnn train: interrupted \(Ctrl-C\) (during epoch \d+ of 1000, after \d+ "
                        r"complete epoch\(s\)|after epoch \d+ of 1000); nothing was written", line), line
    assert int(re.search(r"epoch (\d+)", line)[1]) >= 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npz"]


# -- MNIST: the main job and the default data ------------------------------------------------------------
def _mnist_or_skip():
    from fastnn.datasets import load_mnist
    try:
        load_mnist("test", limit=1)
    except (OSError, ValueError) as exc:
        pytest.skip(f"MNIST is not available here: {exc}")


def test_main_job_on_a_subset(tmp_path):
    _mnist_or_skip()
    (s1, out, e1), (s2, check, e2) = cli_many([["--limit", "600", "--epochs", "1"], ["--check"]], tmp_path)
    assert (s1, s2) == (0, 0), (e1, e2)
    for text in (out, check):  # show_config, then the kernel self-check
        assert "gemm kernel:" in text and re.search(r"float32 +gemm +max error \S+  ok", text)
    assert "Dense(units=256, activation='relu')" in out and "training: 1 epoch, batch 128, 600 rows" in out
    assert re.search(r"^test accuracy 0\.\d+  loss \S+  \[600 rows\]$", out, re.M)
    assert "model not saved" in out and "test accuracy" not in check
    assert list(tmp_path.iterdir()) == []  # the main job writes nothing


def test_mnist_early_stopping_holds_out_training_rows_not_the_test_set(tmp_path):
    """Defect: on MNIST, --early-stopping watched the test set's loss, kept the weights best on it,
    then reported their accuracy on that same test set."""
    _mnist_or_skip()
    status, out, err = cli(["train", "--limit", "600", "--epochs", "2", "--early-stopping", "1",
                            "--hidden", "16", "-o", "m.safetensors"], tmp_path)
    assert status == 0, err
    assert "training: 2 epochs, batch 128, 540 rows, validating on 60 held-out rows" in out
    assert re.search(r"^test accuracy 0\.\d+  loss \S+  \[600 rows\]$", out, re.M)
    status, out, err = cli(["train", "--limit", "600", "--epochs", "1", "--hidden", "16"], tmp_path)
    assert status == 0, err  # without early stopping the test set is only shown, as before
    assert "training: 1 epoch, batch 128, 600 rows, validating on 600 test rows" in out


def test_early_stopping_on_one_mnist_row_names_its_implicit_hold_out(tmp_path):
    _mnist_or_skip()
    status, _, err = cli(["train", "--limit", "1", "--early-stopping", "1"], tmp_path)
    assert status == 1 and one_line_error(err).endswith(
        "holding out 0.1 of the rows (--validation-split's default with --early-stopping) leaves no "
        "training rows out of 1")


def test_mnist_train_then_evaluate_by_default(tmp_path):
    _mnist_or_skip()
    status, out, err = cli(["train", "--teaching", "--limit", "500", "--epochs", "1", "-o", "t.safetensors"],
                           tmp_path)
    assert status == 0, err
    assert "Dense(units=30, activation='sigmoid')" in out and "loss: mse" in out
    status, out, err = cli(["evaluate", "t.safetensors", "--limit", "300"], tmp_path)
    assert status == 0, err
    assert "data: MNIST's test set: 300 rows" in out
    matrix = out.split("predicted label):\n")[1].splitlines()
    assert matrix[0].split() == [str(k) for k in range(10)] and len(matrix) == 11


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
def test_a_multi_label_estimator_file_predicts_rows_of_labels(tmp_path):
    """Defect: predict and evaluate of a multi-label MLPClassifier's file died with
    "TypeError: unhashable type: 'list'" (unexpected), and info called it a 3-class classifier."""
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    Y = np.stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 0] + X[:, 1] > 0], axis=1).astype(int)
    clf = fastnn.MLPClassifier((16,), max_iter=200, learning_rate_init=0.02, random_state=0).fit(X, Y)
    clf.save(tmp_path / "ml.safetensors")
    np.savez(tmp_path / "ml.npz", X=X, y=Y)
    write_csv(tmp_path / "one.csv", ["a", "b", "c", "d", "t"], [list(r) + [0] for r in X.tolist()])
    (s1, info, e1), (s2, pred, e2), (s3, ev, e3), (s4, _, e4) = cli_many(
        [["info", "ml.safetensors"], ["predict", "ml.safetensors", "ml.npz", "--proba"],
         ["evaluate", "ml.safetensors", "ml.npz"], ["evaluate", "ml.safetensors", "one.csv"]], tmp_path)
    assert (s1, s2, s3) == (0, 0, 0), (e1, e2, e3)
    assert "task: multilabel, 4 features" in info and "classes" not in info.split("task:")[1].splitlines()[0]
    lines = pred.splitlines()
    assert lines[0] == "output_0,output_1,output_2,proba_0,proba_1,proba_2"
    got = np.array([[float(v) for v in ln.split(",")] for ln in lines[1:]])
    np.testing.assert_array_equal(got[:, :3], clf.predict(X))
    np.testing.assert_allclose(got[:, 3:], clf.predict_proba(X), rtol=1e-7)
    assert "(MLPClassifier, multilabel)" in ev and re.search(r"^accuracy \S+  loss \S+", ev, re.M)
    assert s4 == 1 and one_line_error(e4).endswith(
        "one.csv: a multi-label model's targets are rows of 3 values in [0, 1] (a .npz y of shape (n, 3)); "
        "got shape (120,)")


def test_train_says_when_it_replaced_a_model_file(work):
    d, _ = work
    args = ["train", "--data", "flowers.csv", "--target", "species", "--epochs", "1", "-o", "twice.safetensors"]
    (s1, first, e1), = cli_many([args], d)
    s2, second, e2 = cli(args, d)
    assert (s1, s2) == (0, 0), (e1, e2)
    assert first.rstrip().endswith("model written to twice.safetensors")
    assert second.rstrip().endswith("model written to twice.safetensors (it replaced the file there)")


def test_predict_reads_a_npy_array(work):
    d, _ = work
    X = np.random.default_rng(1).normal(size=(5, 4))
    np.save(d / "five.npy", X)
    status, out, err = cli(["predict", "flowers.safetensors", "five.npy"], d)
    assert status == 0, err
    want = np.array(SPECIES)[fastnn.load(d / "flowers.safetensors").predict(X.astype(np.float32))]
    assert out.splitlines() == ["species", *want]


def test_no_output_may_replace_an_input(work):
    """The demanding user's data loss: `-o` naming the model or the data file (or a link to it)
    replaced it; train's --output and --plot likewise. Each is refused before anything is read or
    written, and the files stay as they were."""
    d, _ = work
    os.symlink(d / "flowers.csv", d / "flowers-link.csv")
    before = {n: (d / n).read_bytes() for n in ("flowers.csv", "flowers.safetensors")}
    cases = [(["predict", "flowers.safetensors", "flowers.csv", "-o", "flowers.safetensors"], "model file"),
             (["predict", "flowers.safetensors", "flowers.csv", "-o", "flowers.csv"], "data file"),
             (["predict", "flowers.safetensors", "flowers.csv", "-o", "flowers-link.csv"], "data file"),
             (["train", "--data", "flowers.csv", "--target", "species", "-o", "flowers.csv"], "data file"),
             (["train", "--data", "flowers.csv", "--target", "species", "-o", "refused.png", "--plot", "refused.png"],
              "--plot file")]
    if importlib.util.find_spec("matplotlib") is None:
        cases.pop()
    for (args, what), (status, out, err) in zip(cases, cli_many([a for a, _ in cases], d)):
        assert status == 2 and f"is the {what}" in one_line_error(err) and "choose another file" in err, (args, err)
    assert {n: (d / n).read_bytes() for n in before} == before and not (d / "refused.png").exists()
    # MNIST's own files, when --data is left out (the hostile tester replaced t10k-labels that way)
    mnist = d / "mnist-copy"
    (mnist / "mnist").mkdir(parents=True)
    from fastnn.datasets import mnist_search_path
    source = next((Path(p) for _, p in mnist_search_path()
                   if (Path(p) / "t10k-labels-idx1-ubyte.gz").is_file()), None)
    if source is None:
        return  # no MNIST here to copy
    target = mnist / "mnist" / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes((source / "t10k-labels-idx1-ubyte.gz").read_bytes())
    env = dict(_env(), FASTNN_DATA=str(mnist))
    p = subprocess.run([sys.executable, "-m", "fastnn", "train", "--limit", "100", "-o", str(target)],
                       cwd=d, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "is the MNIST file" in one_line_error(p.stderr)
    assert target.read_bytes() == (source / "t10k-labels-idx1-ubyte.gz").read_bytes()


def test_predict_writes_npy_and_npz_arrays_that_load_without_pickle(work):
    d, _ = work
    model = fastnn.load(d / "flowers.safetensors")
    with open(d / "flowers.csv") as f:
        X = np.array([[float(r[k]) for k in ("sepal", "width", "petal", "depth")] for r in csv.DictReader(f)])
    want = np.array(SPECIES)[model.predict(X.astype(np.float32))]
    (s1, o1, e1), (s2, o2, e2), (s3, o3, e3) = cli_many([
        ["predict", "flowers.safetensors", "flowers.csv", "-o", "p.npy"],
        ["predict", "flowers.safetensors", "flowers.csv", "-o", "p.npz", "--proba"],
        ["predict", "flowers.safetensors", "flowers.csv", "-o", "q.npy", "--proba"]], d)
    assert s1 == 0 and s2 == 0, e1 + e2
    got = np.load(d / "p.npy", allow_pickle=False)
    assert got.dtype.kind == "U" and got.tolist() == want.tolist()
    with np.load(d / "p.npz", allow_pickle=False) as z:
        assert z["prediction"].tolist() == want.tolist() and z["classes"].tolist() == SPECIES
        np.testing.assert_allclose(z["proba"], model.predict_proba(X.astype(np.float32)), rtol=1e-6)
    assert s3 == 2 and "--proba needs a CSV or .npz output" in one_line_error(e3)
    assert not (d / "q.npy").exists()
    status, out, err = cli(["predict", "flowers.safetensors", "flowers.csv", "-o", "nowhere/p.csv"], d)
    assert status == 1 and one_line_error(err).endswith("cannot write the predictions to nowhere/p.csv: its "
                                                        "directory does not exist")


def test_predict_ignores_blank_target_cells(work):
    """Rows to predict often have no label yet: a target column of blank cells is ignored, as the
    help says of the target column (it was refused as 'empty')."""
    d, _ = work
    with open(d / "flowers.csv") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:6]
    blank = [[v if header[j] != "species" else "" for j, v in enumerate(r)] for r in body]
    write_csv(d / "unlabelled.csv", header, blank)
    status, out, err = cli(["predict", "flowers.safetensors", "unlabelled.csv"], d)
    assert status == 0, err
    status2, out2, _ = cli(["predict", "flowers.safetensors", "flowers.csv", "--limit", "5"], d)
    assert out == out2 and len(out.splitlines()) == 6


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
def test_estimator_files_answer_in_their_classes(work):
    pytest.importorskip("sklearn")
    d, _ = work
    with open(d / "flowers.csv") as f:
        rows = list(csv.DictReader(f))
    X = np.array([[float(r[k]) for k in ("sepal", "width", "petal", "depth")] for r in rows])
    y = np.array([r["species"] for r in rows])
    fastnn.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y).save(d / "clf.safetensors")
    np.savez(d / "features.npz", X=X)
    (s1, pred, e1), (s2, info, e2) = cli_many([["predict", "clf.safetensors", "features.npz"],
                                               ["info", "clf.safetensors"]], d)
    assert (s1, s2) == (0, 0), (e1, e2)
    assert pred.splitlines()[0] == "prediction" and set(pred.splitlines()[1:]) <= set(SPECIES)
    assert "kind MLPClassifier" in info and "3 classes (setosa, versicolor, virginica)" in info


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
def test_an_estimator_fitted_with_feature_names_answers_without_warnings(work):
    """Defect: an estimator fitted on a DataFrame printed scikit-learn's "X does not have valid
    feature names" on stderr for each call, though the CLI picks the CSV's columns by those names."""
    pytest.importorskip("sklearn")
    d, _ = work
    with open(d / "flowers.csv") as f:
        rows = list(csv.DictReader(f))
    names = ["petal", "sepal", "depth", "width"]  # another order than the file's
    X = np.array([[float(r[k]) for k in names] for r in rows])
    clf = fastnn.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, [r["species"] for r in rows])
    clf.feature_names_in_ = np.array(names, dtype=object)  # what a DataFrame's fit records
    clf.save(d / "named.safetensors")
    (s1, pred, e1), (s2, ev, e2) = cli_many([["predict", "named.safetensors", "flowers.csv"],
                                             ["evaluate", "named.safetensors", "flowers.csv", "--target", "species"]], d)
    assert (s1, s2) == (0, 0) and e1 == e2 == "", (e1, e2)
    np.savez(d / "named.npz", X=X)  # columns by position: scikit-learn's warning says so
    status, _, err = cli(["predict", "named.safetensors", "named.npz"], d)
    assert status == 0 and "X does not have valid feature names" in err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = clf.predict(X)
    assert pred.splitlines()[1:] == list(want)
    assert re.search(r"^accuracy \S+", ev, re.M)


def test_a_network_too_large_for_memory_is_one_line(work, monkeypatch, capsys):
    """MemoryError while the model is built: the reason in one line, not an "unexpected" error."""
    from fastnn import cli as fastnn_cli
    from fastnn.nn import _training

    def no_memory(*args):
        raise MemoryError("Unable to allocate 37.5 GiB for an array")

    d, _ = work
    monkeypatch.chdir(d)
    monkeypatch.setattr(_training.Built, "allocate", classmethod(lambda cls, *a: no_memory()))
    status = fastnn_cli.main(["train", "--data", "flowers.csv", "--target", "species", "--epochs", "1"])
    line = one_line_error(capsys.readouterr().err)
    assert status == 1 and line == ("fastnn train: error: the network does not fit in memory: Unable to "
                                    "allocate 37.5 GiB for an array"), line


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
def test_a_plot_path_that_cannot_be_written_is_refused_before_training(work):
    d, _ = work
    (d / "plots").mkdir(exist_ok=True)
    base = ["train", "--data", "flowers.csv", "--target", "species", "--epochs", "1", "-o", "refused.safetensors"]
    results = cli_many([base + ["--plot", "plots"], base + ["--plot", "curves.xyz"],
                        base + ["--plot", "missing/curves.png"]], d)
    lines = [(status, one_line_error(err)) for status, _, err in results]
    assert lines.pop() == (1, "fastnn train: error: cannot write the plot to missing/curves.png: its "
                              "directory does not exist")
    assert lines == [(2, "fastnn train: error: --plot 'plots' is a directory"),
                     (2, "fastnn train: error: --plot: cannot write a plot as 'xyz' ('curves.xyz'): the "
                         "formats are " + lines[1][1].split("the formats are ")[-1])], lines
    assert "png" in lines[1][1] and not (d / "refused.safetensors").exists() and not (d / "plots.png").exists()


def test_the_confusion_matrix_keeps_one_line_a_row_whatever_the_labels_hold():
    from fastnn.cli.evaluate import confusion
    text = confusion(np.array([0, 1, 1]), np.array([0, 1, 0]), ["a\nb", "tab\there", 7])
    lines = text.splitlines()
    assert len(lines) == 4 and lines[1].split() == ["a\\nb", "1", "0", "0"]
    assert lines[2].split() == ["tab\\there", "1", "1", "0"]

"""fastnn (or python -m fastnn): train an MLP on MNIST from the copy that ships with fastnn.

    fastnn                      # 784-256-128-10, relu, Adam 1e-3, batch 128, 3 epochs
    fastnn --teaching           # the classic intro: 784-30-10 sigmoid, MSE, plain SGD
    fastnn --check              # kernel self-check: compiled kernels vs the NumPy oracle
"""
import argparse
import sys
import time

import numpy as np


def self_check():
    """Compare every compiled kernel with the NumPy oracle on random data; return True if equal."""
    from . import _engine as _backend
    from ._engine import reference as R
    if "c" not in _backend.available_backends():
        print("compiled extension not available: nothing to check (NumPy backend in use)")
        return True
    from ._engine import _ext as C
    rng = np.random.default_rng(0)
    ok = True
    for dt, tol in ((np.float32, 1e-4), (np.float64, 1e-10)):
        A, B = rng.standard_normal((37, 53)).astype(dt), rng.standard_normal((53, 29)).astype(dt)
        c1, c2 = np.empty((37, 29), dt), np.empty((37, 29), dt)
        C.gemm(c1, A, B)
        R.gemm(c2, A, B)
        checks = {"gemm": np.abs(c1 - c2).max() / np.abs(c2).max()}
        X = rng.standard_normal((17, 11)).astype(dt)
        for name, code in (("relu", 1), ("sigmoid", 3), ("tanh", 4), ("softmax", 5)):
            y1, y2 = np.empty_like(X), np.empty_like(X)
            C.activation_forward(code, y1, X)
            R.activation_forward(code, y2, X)
            checks[name] = np.abs(y1 - y2).max()
        labels = rng.integers(0, 11, 17)
        l1, l2 = C.loss_forward(0, X, None, labels), R.loss_forward(0, X, None, labels)
        checks["cross_entropy"] = abs(l1 - l2)
        for name, err in checks.items():
            good = err <= tol
            ok &= good
            print(f"  {np.dtype(dt).name:8s} {name:14s} max error {err:.2e}  {'ok' if good else 'FAIL'}")
    return ok


def main(argv=None):
    import fastnn
    from fastnn.datasets import load_mnist

    p = argparse.ArgumentParser(prog="fastnn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--hidden", default=None, help="comma-separated hidden widths, e.g. 256,128")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--backend", choices=["c", "python"], default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--teaching", action="store_true", help="sigmoid hidden layer, MSE, plain SGD")
    p.add_argument("--check", action="store_true", help="kernel self-check only")
    a = p.parse_args(argv)
    if a.backend:
        fastnn.set_backend(a.backend)
    from . import _engine as _backend
    if "c" not in _backend.available_backends():
        print("*** fastnn's compiled extension is not importable, so this runs on the slow NumPy backend.\n"
              "*** From a source checkout, run the installed `fastnn` command (or run Python outside the\n"
              f"*** repository root); import error: {_backend._EXT_ERROR}", flush=True)
    fastnn.show_config()
    if a.check:
        return 0 if self_check() else 1
    print("kernel self-check:")
    if not self_check():
        print("self-check FAILED")
        return 1

    Xtr, ytr = load_mnist("train", a.dtype)
    Xte, yte = load_mnist("test", a.dtype)
    if a.teaching:
        # A classic introduction: 784 inputs, 30 sigmoid neurons, 10 sigmoid outputs trained on the
        # mean squared error against one-hot targets with plain gradient descent.
        hidden = [int(h) for h in (a.hidden or "30").split(",")]
        layers = [fastnn.Dense(h, activation="sigmoid") for h in hidden] + [fastnn.Dense(10, activation="sigmoid")]
        model = fastnn.Sequential(layers, dtype=a.dtype, seed=a.seed)
        model.compile(fastnn.SGD(lr=a.lr or 3.0), loss="mse")
        Ytr = np.eye(10, dtype=a.dtype)[ytr]
        Yte = np.eye(10, dtype=a.dtype)[yte]
        epochs, bs = a.epochs or 10, a.batch_size or 10
        t = time.perf_counter()
        model.fit(Xtr, Ytr, epochs=epochs, batch_size=bs, verbose=1)
        acc = float((model.predict(Xte).argmax(1) == yte).mean())
        print(f"teaching network {[784] + hidden + [10]}: test accuracy {acc:.4f} "
              f"({time.perf_counter() - t:.1f} s)")
        return 0

    hidden = [int(h) for h in (a.hidden or "256,128").split(",")]
    model = fastnn.Sequential([fastnn.Dense(h, activation="relu") for h in hidden] + [fastnn.Dense(10)],
                              dtype=a.dtype, seed=a.seed)
    model.compile(fastnn.Adam(lr=a.lr or 1e-3), loss="cross_entropy")
    epochs, bs = a.epochs or 3, a.batch_size or 128
    model.build(784)
    model.summary()
    hist = model.fit(Xtr, ytr, epochs=epochs, batch_size=bs, validation_data=(Xte, yte), verbose=1)
    best = min(hist["time"])
    print(f"MNIST {[784] + hidden + [10]} adam bs={bs}: test accuracy {hist['val_accuracy'][-1]:.4f}, "
          f"best epoch {best:.3f} s ({len(Xtr) / best:,.0f} samples/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

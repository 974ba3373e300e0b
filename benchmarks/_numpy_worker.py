"""A NumPy trainer in its own process, so that it runs under an environment chosen by the parent
(OpenBLAS reads OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE once, when it is loaded: they cannot be
changed inside a running process). The parent drives it over stdin / stdout, one line each:

    epoch <batch>   -> "ok <seconds>"       one training epoch on MNIST
    accuracy        -> "ok <test accuracy>"
    info            -> "ok <json>"          OpenBLAS as seen by threadpoolctl, and the two variables
    quit
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _baselines import NumpyMLP, blas_info  # noqa: E402


def main():
    from fastnn.datasets import load_mnist
    X, y = load_mnist("train")
    Xt, yt = load_mnist("test")
    net = NumpyMLP()
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "epoch":
            t0 = time.perf_counter()
            net.epoch(X, y, int(cmd[1]))
            print(f"ok {time.perf_counter() - t0}", flush=True)
        elif cmd[0] == "accuracy":
            print(f"ok {net.accuracy(Xt, yt)}", flush=True)
        elif cmd[0] == "info":
            print("ok " + json.dumps(blas_info()), flush=True)
        else:
            print(f"error unknown command {cmd[0]!r}", flush=True)


if __name__ == "__main__":
    main()

"""The competitors fastnn is measured against, written for these benchmarks: the same network
(784-256-128-10, ReLU, softmax cross entropy, Adam 1e-3, He-normal weights, seeded) in plain
NumPy, PyTorch, JAX and scikit-learn. Optional libraries are passed in as modules, so importing
this file never imports them."""
import os

import numpy as np

SIZES = (784, 256, 128, 10)
LR, BETA1, BETA2, EPS = 1e-3, 0.9, 0.999, 1e-8


def he_normal(sizes=SIZES, seed=0, dtype=np.float32):
    """(weights, biases): weights (n_in, n_out) ~ N(0, 2 / n_in), biases zero."""
    rng = np.random.default_rng(seed)
    W = [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(dtype) for a, b in zip(sizes, sizes[1:])]
    b = [np.zeros(n, dtype) for n in sizes[1:]]
    return W, b


OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def blas_info():
    """NumPy's BLAS in this process, as threadpoolctl sees it, and the OpenBLAS variables."""
    info = {k: os.environ.get(k) for k in OPENBLAS_VARS}
    try:
        import threadpoolctl
        blas = [lib for lib in threadpoolctl.threadpool_info() if lib.get("user_api") == "blas"]
        blas.sort(key=lambda lib: "numpy" not in lib.get("filepath", ""))  # NumPy's own first
        if blas:
            info.update({k: blas[0].get(k) for k in ("internal_api", "version", "architecture", "num_threads")})
    except ImportError:
        pass
    return info


def describe_blas(info):
    """One line from blas_info()."""
    lib = " ".join(str(info[k]) for k in ("internal_api", "version", "architecture") if info.get(k))
    env = ", ".join(f"{k}={info[k]}" for k in OPENBLAS_VARS if info.get(k) is not None) or "no OPENBLAS_* variable set"
    return f"{lib or 'BLAS unknown'} ({env})"


# -- NumPy ------------------------------------------------------------------------------------
def numpy_forward(W, b, X):
    """Logits of the ReLU MLP."""
    for i, (w, c) in enumerate(zip(W, b)):
        X = X @ w + c
        if i < len(W) - 1:
            np.maximum(X, 0, out=X)
    return X


def numpy_proba(W, b, X):
    """Class probabilities of the ReLU MLP: the softmax of numpy_forward's logits."""
    z = numpy_forward(W, b, X)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def onnx_mlp(onnx, weights, softmax=True):
    """The ReLU MLP with these weights as a serialized ONNX model (opset 17) built with
    onnx.helper: Gemm + Relu per layer, then Softmax over the classes; input "x" (rows, n_in)."""
    from onnx import TensorProto, helper, numpy_helper
    W, b = weights
    nodes, inits, cur = [], [], "x"
    for i, (w, c) in enumerate(zip(W, b)):
        inits += [numpy_helper.from_array(np.ascontiguousarray(w), f"W{i}"), numpy_helper.from_array(c, f"B{i}")]
        nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"B{i}"], [f"h{i}"]))
        cur = f"h{i}"
        if i < len(W) - 1:
            nodes.append(helper.make_node("Relu", [cur], [f"r{i}"]))
            cur = f"r{i}"
    if softmax:
        nodes.append(helper.make_node("Softmax", [cur], ["y"], axis=1))
        cur = "y"
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, W[0].shape[0]])],
        [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [None, W[-1].shape[1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # opset 17's IR, as fastnn's exporter writes: older onnxruntime rejects newer IRs
    return model.SerializeToString()


class NumpyMLP:
    """A plain vectorised NumPy trainer: one mini-batch at a time, matrix products through
    NumPy's BLAS, Adam with in-place moment updates. What a careful NumPy user writes."""

    def __init__(self, sizes=SIZES, seed=0, dtype=np.float32):
        self.W, self.b = he_normal(sizes, seed, dtype)
        self.params = self.W + self.b
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0
        self.rng = np.random.default_rng(seed + 1)

    def step(self, x, y):
        n, L = len(y), len(self.W)
        acts = [x]
        for i in range(L):
            z = acts[-1] @ self.W[i] + self.b[i]
            if i < L - 1:
                np.maximum(z, 0, out=z)
            acts.append(z)
        p = acts[-1]  # softmax cross entropy: dL/dz = (softmax(z) - onehot(y)) / n
        p -= p.max(axis=1, keepdims=True)
        np.exp(p, out=p)
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(n), y] -= 1
        d = p * (1.0 / n)
        gW, gb = [None] * L, [None] * L
        for i in range(L - 1, -1, -1):
            gW[i] = acts[i].T @ d
            gb[i] = d.sum(axis=0)
            if i:
                d = d @ self.W[i].T
                d *= acts[i] > 0
        self.t += 1
        lr_t = LR / (1 - BETA1 ** self.t)
        c2 = 1.0 / (1 - BETA2 ** self.t)
        for p_, g, m, v in zip(self.params, gW + gb, self.m, self.v):
            m *= BETA1
            m += (1 - BETA1) * g
            v *= BETA2
            v += (1 - BETA2) * (g * g)
            p_ -= lr_t * m / (np.sqrt(v * c2) + EPS)

    def epoch(self, X, y, batch):
        perm = self.rng.permutation(len(X))
        for s in range(0, len(X), batch):
            idx = perm[s:s + batch]
            self.step(X[idx], y[idx])

    def accuracy(self, X, y):
        return float((numpy_forward(self.W, self.b, X).argmax(axis=1) == y).mean())


# -- PyTorch ----------------------------------------------------------------------------------
def torch_mlp(torch, sizes=SIZES, seed=0, weights=None):
    """nn.Sequential of Linear / ReLU; `weights` = (W, b) NumPy lists to copy in (W as (in, out))."""
    torch.manual_seed(seed)
    layers = []
    for i, (a, n) in enumerate(zip(sizes, sizes[1:])):
        layers.append(torch.nn.Linear(a, n))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    if weights is not None:
        linears = [ly for ly in model if isinstance(ly, torch.nn.Linear)]
        with torch.no_grad():
            for ly, w, c in zip(linears, *weights):
                ly.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
                ly.bias.copy_(torch.from_numpy(c))
    return model


class TorchTrainer:
    """The usual PyTorch loop: randperm, index, zero_grad, forward, backward, Adam step."""

    def __init__(self, torch, X, y, seed=0):
        self.torch = torch
        self.model = torch_mlp(torch, seed=seed)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR, betas=(BETA1, BETA2), eps=EPS)
        self.lossf = torch.nn.CrossEntropyLoss()
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)
        self.gen = torch.Generator().manual_seed(seed + 1)

    def epoch(self, batch):
        torch = self.torch
        perm = torch.randperm(len(self.X), generator=self.gen)
        for s in range(0, len(self.X), batch):
            idx = perm[s:s + batch]
            self.opt.zero_grad(set_to_none=True)
            loss = self.lossf(self.model(self.X[idx]), self.y[idx])
            loss.backward()
            self.opt.step()

    def accuracy(self, X, y):
        with self.torch.no_grad():
            z = self.model(self.torch.from_numpy(X))
        return float((z.argmax(1).numpy() == y).mean())


# -- JAX --------------------------------------------------------------------------------------
class JaxScanTrainer:
    """A whole epoch as one jitted call: shuffle on the device, then lax.scan over the batches
    (each step gathers its batch, differentiates the loss and applies Adam). The last partial
    batch is dropped (scan needs equal steps): 468 x 128 = 59,904 samples per epoch."""

    def __init__(self, jax, X, y, batch, seed=0, sizes=SIZES):
        jnp = jax.numpy
        tmap = jax.tree_util.tree_map
        self.jax, self.batch = jax, batch
        self.n_steps = len(X) // batch
        key = jax.random.PRNGKey(seed)
        params = []
        for a, n in zip(sizes, sizes[1:]):
            key, k = jax.random.split(key)
            params.append((jax.random.normal(k, (a, n), jnp.float32) * np.sqrt(2.0 / a),
                           jnp.zeros(n, jnp.float32)))
        zeros = tmap(jnp.zeros_like, params)
        self.state = (params, zeros, zeros, jnp.float32(0))
        self.key = key
        self.X, self.y = jax.device_put(X), jax.device_put(y.astype(np.int32))

        def forward(p, x):
            for w, c in p[:-1]:
                x = jax.nn.relu(x @ w + c)
            w, c = p[-1]
            return x @ w + c

        def loss(p, x, t):
            logp = jax.nn.log_softmax(forward(p, x))
            return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=1))

        n_steps = self.n_steps

        def epoch(state, key, X, Y):
            key, k = jax.random.split(key)
            order = jax.random.permutation(k, X.shape[0])[:n_steps * batch].reshape(n_steps, batch)

            def step(st, idx):
                p, m, v, t = st
                g = jax.grad(loss)(p, X[idx], Y[idx])
                t = t + 1
                m = tmap(lambda m_, g_: BETA1 * m_ + (1 - BETA1) * g_, m, g)
                v = tmap(lambda v_, g_: BETA2 * v_ + (1 - BETA2) * g_ * g_, v, g)
                lr_t = LR / (1 - BETA1 ** t)
                c2 = 1 / (1 - BETA2 ** t)
                p = tmap(lambda p_, m_, v_: p_ - lr_t * m_ / (jnp.sqrt(v_ * c2) + EPS), p, m, v)
                return (p, m, v, t), None

            state, _ = jax.lax.scan(step, state, order)
            return state, key

        # compiled here, ahead of time, so no timed call ever includes tracing or XLA compilation
        self._epoch = jax.jit(epoch).lower(self.state, self.key, self.X, self.y).compile()
        self._predict = jax.jit(lambda p, x: forward(p, x).argmax(axis=1))

    def epoch(self):
        self.state, self.key = self._epoch(self.state, self.key, self.X, self.y)
        self.jax.block_until_ready(self.state)

    def accuracy(self, X, y):
        return float((np.asarray(self._predict(self.state[0], X)) == y).mean())

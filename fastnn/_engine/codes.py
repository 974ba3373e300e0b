"""The integer codes of csrc/fastnn.h, by name, shared by both backends.

Each table holds one C enum under Python names; c_constants() gives every code here under its C
name (FNN_ACT_RELU, FNN_CTR_STEP, ...), which tests compare, both ways, with the values the
compiled extension reads from the header (fastnn._engine._ext.constants())."""

STATUSES = {"ok": 0, "einval": -1, "enomem": -2, "eintr": -3, "enonfinite": -4, "eunsupported": -5,
            "eoverflow": -6}
ACTIVATIONS = {"identity": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4, "softmax": 5}
LOSSES = {"softmax_xent": 0, "sigmoid_bce": 1, "mse": 2}
# scikit-learn's MLP losses (same C enum, fnn_loss): what a scikit-learn estimator asks for
SK_LOSSES = {"sk_log_loss": 3, "sk_binary_log_loss": 4, "sk_squared_error": 5, "sk_poisson": 6}
LAYERS = {"dense": 0, "activation": 1, "dropout": 2, "batchnorm": 3}
OPTIMIZERS = {"sgd": 0, "adam": 1, "rmsprop": 2}
FORMS = {"torch": 0, "sklearn": 1}  # fnn_optim_form: the updates' form (OPTIM.form)
ORDERS = {"identity": 0, "shuffle": 1, "given": 2}  # fnn_order: train_epoch's `shuffle` argument
SCHEDULES = {"constant": 0, "step": 1, "exponential": 2, "cosine": 3, "invscaling": 4, "adaptive": 5}
N_SLOTS = {0: 1, 1: 2, 2: 1}  # optimizer code -> state arrays mirroring the parameters
RNG_SHUFFLE = 1
RNG_DROPOUT = 16
CTR_STEP, CTR_SAMPLES, N_COUNTERS = 0, 1, 2
# the training step's phases in a profiling build (csrc/profile.h, enum FNN_PH_*), in order
PHASES = ("gather", "forward GEMM", "bias+activation", "other layers", "loss", "activation backward",
          "dW GEMM", "bias backward", "dX GEMM", "gradient check", "update", "rest")

# C name = prefix + the Python name in capitals
_C_PREFIXES = (("FNN_", STATUSES), ("FNN_ACT_", ACTIVATIONS), ("FNN_LOSS_", LOSSES),
               ("FNN_LOSS_", SK_LOSSES), ("FNN_LAYER_", LAYERS), ("FNN_OPT_", OPTIMIZERS),
               ("FNN_FORM_", FORMS), ("FNN_ORDER_", ORDERS), ("FNN_LR_", SCHEDULES))
_C_SCALARS = ("RNG_SHUFFLE", "RNG_DROPOUT", "CTR_STEP", "CTR_SAMPLES", "N_COUNTERS")


def c_constants():
    """{C name: value} of every code above."""
    out = {prefix + name.upper(): code
           for prefix, table in _C_PREFIXES for name, code in table.items()}
    out.update({"FNN_" + name: globals()[name] for name in _C_SCALARS})
    return out

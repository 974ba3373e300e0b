"""The integer codes of csrc/fastnn.h, by name, shared by both backends."""

ACTIVATIONS = {"identity": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4, "softmax": 5}
ACTIVATION_ALIASES = {"linear": "identity", "logistic": "sigmoid", None: "identity"}
LOSSES = {"softmax_xent": 0, "sigmoid_bce": 1, "mse": 2}
LAYERS = {"dense": 0, "activation": 1, "dropout": 2, "batchnorm": 3}
OPTIMIZERS = {"sgd": 0, "adam": 1, "rmsprop": 2}
SCHEDULES = {"constant": 0, "step": 1, "exponential": 2, "cosine": 3, "invscaling": 4, "adaptive": 5}
N_SLOTS = {0: 1, 1: 2, 2: 1}  # optimizer code -> state arrays mirroring the parameters
RNG_SHUFFLE = 1
RNG_DROPOUT = 16
CTR_STEP, CTR_SAMPLES, N_COUNTERS = 0, 1, 2

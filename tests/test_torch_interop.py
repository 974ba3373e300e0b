"""The README's PyTorch recipe: a fastnn model file's weights loaded with safetensors.torch give
a torch network whose outputs equal fastnn's predictions."""
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import fastnn  # noqa: E402


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_readme_recipe_rebuilds_the_network_in_torch(tmp_path, dtype):
    rng = np.random.default_rng(0)
    X, y = rng.random((64, 12)).astype(dtype), rng.integers(0, 3, 64)
    model = fastnn.Sequential([fastnn.Dense(16, activation="relu"), fastnn.Dense(3, activation="softmax")],
                              dtype=dtype)
    model.compile("adam")
    model.fit(X, y, epochs=2, batch_size=16)
    path = str(tmp_path / "model.safetensors")
    model.save(path)

    tensors = load_file(path)  # as in the README
    with safe_open(path, "pt") as f:
        arrays = json.loads(f.metadata()["arrays"])

    def array(name):
        a = arrays[name]
        flat = tensors[a["tensor"]]
        return flat[a["offset"]:a["offset"] + math.prod(a["shape"])].reshape(a["shape"])

    tdtype = torch.float32 if dtype == "float32" else torch.float64
    net = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3),
                              torch.nn.Softmax(dim=1)).to(tdtype)
    with torch.no_grad():
        for i, linear in ((0, net[0]), (1, net[2])):
            linear.weight.copy_(array(f"layers.{i}.kernel").T)
            linear.bias.copy_(array(f"layers.{i}.bias"))
        got = net(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(got, model.predict_proba(X), rtol=1e-5 if dtype == "float32" else 1e-12,
                               atol=1e-6 if dtype == "float32" else 1e-14)

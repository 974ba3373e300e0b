"""Model files and export, a front end over the model API: fastnn's own safetensors reader and
writer (NumPy only), model files that resume training exactly, atomic writes, ONNX export.

    model.save("model.safetensors")            # Sequential.save delegates here
    model = fastnn.load("model.safetensors")   # the right class, ready to predict or train on
    proto = fastnn.to_onnx(model)               # needs the onnx package (pip install fastnn[onnx])
"""
from .model_file import FORMAT_VERSION, load, register_kind, save
from . import estimator_file  # noqa: F401  (names the estimators' kinds, so load finds them)
from .onnx_export import to_onnx

__all__ = ["FORMAT_VERSION", "load", "register_kind", "save", "to_onnx"]

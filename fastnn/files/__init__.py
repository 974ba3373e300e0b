"""Model files and export, a front end over the model API: fastnn's own safetensors reader and
writer (NumPy only), model files that resume training exactly, atomic writes.

    model.save("model.safetensors")            # Sequential.save delegates here
    model = fastnn.load("model.safetensors")   # the right class, ready to predict or train on
"""
from .model_file import FORMAT_VERSION, load, register_kind, save

__all__ = ["FORMAT_VERSION", "load", "register_kind", "save"]

"""Model files and export, a front end over the model API: fastnn's own safetensors reader and
writer (NumPy only) and atomic writes."""

"""Exceptions shared by both backends."""


class NonFiniteError(FloatingPointError):
    """The loss or a gradient became NaN or infinite (training diverged)."""

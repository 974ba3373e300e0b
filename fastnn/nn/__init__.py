"""The neural-network API: layers, optimizers and schedules, callbacks, progress and Sequential.
Everything here is also importable from fastnn itself."""
from .callbacks import (Callback, EarlyStopping, History, ModelCheckpoint, ReduceLROnPlateau,
                        TerminateOnNaN)
from .layers import Activation, BatchNorm, BatchNormalization, Dense, Dropout, Layer
from .model import Sequential
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSprop, SklearnAdam, SklearnSGD
from .progress import EpochLogger, ProgressBar
from .schedules import (Adaptive, Constant, CosineDecay, ExponentialDecay, InvScaling, Schedule,
                        StepDecay)

__all__ = ["Callback", "EarlyStopping", "History", "ModelCheckpoint", "ReduceLROnPlateau", "TerminateOnNaN",
           "Activation", "BatchNorm", "BatchNormalization", "Dense", "Dropout", "Layer",
           "Sequential", "SGD", "Adam", "AdamW", "Optimizer", "RMSprop", "SklearnSGD", "SklearnAdam", "EpochLogger",
           "ProgressBar", "Adaptive", "Constant", "CosineDecay", "ExponentialDecay", "InvScaling",
           "Schedule", "StepDecay"]

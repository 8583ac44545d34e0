"""Optimisation, schedules, checkpoints and the training loop."""

from .config import TrainConfig
from .loop import Trainer, train

__all__ = ["TrainConfig", "Trainer", "train"]

"""Runnable demonstrations of the lecture's ideas, each a function with a CLI twin."""

from .structured_prediction import structured_prediction

DEMOS = {"structured-prediction": structured_prediction}

__all__ = ["DEMOS", "structured_prediction"]

"""Task models built from layers/. Each file owns its Config dataclass."""

from .char_lm import CharLM, CharLMConfig

MODELS = {"char_lm": (CharLM, CharLMConfig)}

__all__ = ["MODELS", "CharLM", "CharLMConfig"]

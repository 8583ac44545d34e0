"""Task models built from layers/. Each file owns its Config dataclass."""

from .char_lm import CharLM, CharLMConfig
from .classifier import ClassifierConfig, SequenceClassifier
from .seq2seq import Seq2Seq, Seq2SeqConfig
from .tagger import SequenceTagger, TaggerConfig

# task name -> (model, config): the one table that maps --task to code
MODELS = {"lm": (CharLM, CharLMConfig), "seq2seq": (Seq2Seq, Seq2SeqConfig),
          "classify": (SequenceClassifier, ClassifierConfig),
          "tag": (SequenceTagger, TaggerConfig)}

__all__ = ["MODELS", "CharLM", "CharLMConfig", "ClassifierConfig", "Seq2Seq", "Seq2SeqConfig",
           "SequenceClassifier", "SequenceTagger", "TaggerConfig"]

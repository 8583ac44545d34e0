"""Task models built from layers/. Each file owns its Config dataclass."""

from .activity import ActivityConfig, ActivityRecognizer
from .captioner import Captioner, CaptionerConfig
from .char_lm import CharLM, CharLMConfig
from .classifier import ClassifierConfig, SequenceClassifier
from .frame_predictor import FramePredictor, FramePredictorConfig
from .seq2seq import Seq2Seq, Seq2SeqConfig
from .tagger import SequenceTagger, TaggerConfig

# task name -> (model, config): the one table that maps --task to code
MODELS = {"lm": (CharLM, CharLMConfig), "seq2seq": (Seq2Seq, Seq2SeqConfig),
          "classify": (SequenceClassifier, ClassifierConfig),
          "tag": (SequenceTagger, TaggerConfig),
          "activity": (ActivityRecognizer, ActivityConfig), "caption": (Captioner, CaptionerConfig),
          "frames": (FramePredictor, FramePredictorConfig)}

__all__ = ["MODELS", "ActivityConfig", "ActivityRecognizer", "Captioner", "CaptionerConfig",
           "CharLM", "CharLMConfig", "ClassifierConfig", "FramePredictor", "FramePredictorConfig",
           "Seq2Seq", "Seq2SeqConfig", "SequenceClassifier", "SequenceTagger", "TaggerConfig"]

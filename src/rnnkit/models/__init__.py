"""Task models built from layers/. Each file owns its Config dataclass."""

from .activity import ActivityConfig, ActivityRecognizer
from .captioner import Captioner, CaptionerConfig
from .char_lm import CharLM, CharLMConfig
from .classifier import ClassifierConfig, SequenceClassifier
from .frame_predictor import FramePredictor, FramePredictorConfig
from .gpt import GPT, GPTConfig
from .seq2seq import Seq2Seq, Seq2SeqConfig
from .tagger import SequenceTagger, TaggerConfig

# task name -> (model, config): the one table that maps --task to code
MODELS = {"lm": (CharLM, CharLMConfig), "seq2seq": (Seq2Seq, Seq2SeqConfig),
          "classify": (SequenceClassifier, ClassifierConfig),
          "tag": (SequenceTagger, TaggerConfig),
          "activity": (ActivityRecognizer, ActivityConfig), "caption": (Captioner, CaptionerConfig),
          "frames": (FramePredictor, FramePredictorConfig)}
# --task lm --model NAME: the recurrent CharLM, or the transformer baseline in its place
LM_MODELS = {"rnn": (CharLM, CharLMConfig), "gpt": (GPT, GPTConfig)}


def model_classes(task: str, model: str = "rnn") -> tuple:
    """(model class, config class) of a task (and, for lm, of the --model chosen)."""
    return LM_MODELS[model] if task == "lm" else MODELS[task]


__all__ = ["GPT", "LM_MODELS", "MODELS", "ActivityConfig", "ActivityRecognizer", "Captioner",
           "CaptionerConfig", "CharLM", "CharLMConfig", "ClassifierConfig", "FramePredictor",
           "FramePredictorConfig", "GPTConfig", "Seq2Seq", "Seq2SeqConfig", "SequenceClassifier",
           "SequenceTagger", "TaggerConfig", "model_classes"]

"""Task models built from layers/. Each file owns its Config dataclass."""

from .activity import ActivityConfig, ActivityRecognizer
from .captioner import Captioner, CaptionerConfig
from .char_lm import CharLM, CharLMConfig
from .classifier import ClassifierConfig, SequenceClassifier
from .frame_predictor import FramePredictor, FramePredictorConfig
from .gpt import GPT, GPTConfig
from .segmenter import Segmenter, SegmenterConfig
from .seq2seq import Seq2Seq, Seq2SeqConfig
from .tagger import SequenceTagger, TaggerConfig
from .transcriber import Transcriber, TranscriberConfig

# model config fields filled in from the data (vocabularies, label counts), never by hand
DATA_SIZES = ("vocab_size", "tgt_vocab_size", "num_classes", "num_tags", "feature_size")

__all__ = ["DATA_SIZES", "GPT", "ActivityConfig", "ActivityRecognizer", "Captioner",
           "CaptionerConfig", "CharLM", "CharLMConfig", "ClassifierConfig", "FramePredictor",
           "FramePredictorConfig", "GPTConfig", "Segmenter",
           "SegmenterConfig", "Seq2Seq", "Seq2SeqConfig", "SequenceClassifier",
           "SequenceTagger", "TaggerConfig", "Transcriber", "TranscriberConfig"]

"""rnnkit: recurrent sequence models on PyTorch.

    import rnnkit
    model_cfg, cfg = rnnkit.configs(preset="tiny", train={"data": "input.txt"})
    rnnkit.train(model_cfg, cfg, out="runs/mine")
    print(rnnkit.sample("runs/mine", prime_text="The ", length=200)[0])
"""

from .api import (
    configs,
    evaluate,
    load,
    predict,
    predict_model,
    sample,
    sample_model,
    train,
    transcribe,
)
from .data.vocab import CharVocab
from .decoding import SamplingConfig, generate, sample_next_token
from .errors import RnnkitError
from .layers import Bidirectional, BiRecurrent, GRUCell, LSTMCell, Recurrent, RNNCell
from .models import (
    CharLM,
    CharLMConfig,
    ClassifierConfig,
    Seq2Seq,
    Seq2SeqConfig,
    SequenceClassifier,
    SequenceTagger,
    TaggerConfig,
)
from .tasks import DecodeSettings
from .training.config import TrainConfig
from .version import __version__  # noqa: F401 (rnnkit.__version__)

__all__ = ["BiRecurrent", "Bidirectional", "CharLM", "CharLMConfig", "CharVocab",
           "ClassifierConfig", "DecodeSettings", "GRUCell", "LSTMCell", "RNNCell", "Recurrent",
           "RnnkitError", "SamplingConfig", "Seq2Seq", "Seq2SeqConfig", "SequenceClassifier",
           "SequenceTagger", "TaggerConfig", "TrainConfig", "configs", "evaluate", "generate",
           "load", "predict", "predict_model", "sample", "sample_model", "sample_next_token",
           "train", "transcribe"]

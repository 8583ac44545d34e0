"""rnnkit: recurrent sequence models on PyTorch.

    import rnnkit
    model_cfg, cfg = rnnkit.configs(preset="tiny", train={"data": "input.txt"})
    rnnkit.train(model_cfg, cfg, out="runs/mine")
    print(rnnkit.sample("runs/mine", prime_text="The ", length=200)[0])
"""

from .api import configs, evaluate, load, sample, sample_model, train
from .data.vocab import CharVocab
from .decoding import SamplingConfig, generate, sample_next_token
from .errors import RnnkitError
from .layers import GRUCell, LSTMCell, Recurrent, RNNCell
from .models import CharLM, CharLMConfig
from .training.config import TrainConfig

__version__ = "0.1.0"

__all__ = ["CharLM", "CharLMConfig", "CharVocab", "GRUCell", "LSTMCell", "RNNCell", "Recurrent",
           "RnnkitError", "SamplingConfig", "TrainConfig", "configs", "evaluate", "generate",
           "load", "sample", "sample_model", "sample_next_token", "train"]

"""Raw text to token ids and batches (no model code here)."""

from .corpus import Corpus, prepare_corpus
from .vocab import CharVocab

__all__ = ["CharVocab", "Corpus", "prepare_corpus"]

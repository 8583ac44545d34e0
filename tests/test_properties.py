"""Property tests: vocabulary round trip, batching coverage, sampling option validation."""

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rnnkit.data.batching import StreamBatches
from rnnkit.data.corpus import tokenize
from rnnkit.decoding import SamplingConfig
from rnnkit.errors import RnnkitError

# any Unicode text a text file can hold: no lone surrogates (not UTF-8), no NUL (binary), and
# no \r or BOM, which reading normalises away (tested in test_data.py)
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                      blacklist_characters="\x00\r\ufeff"),
               min_size=1, max_size=300)


@given(TEXT)
@settings(max_examples=200, deadline=None)
def test_vocab_round_trips_any_unicode(text):
    assume(text.strip())  # blank text is refused as empty
    ids, vocab = tokenize(text, "stream")
    assert vocab.decode(ids) == text
    assert len(vocab) == len(set(text)) and ids.max() < len(vocab)


@given(n=st.integers(20, 3000), batch=st.integers(1, 16), seq=st.integers(1, 40))
@settings(max_examples=100, deadline=None)
def test_each_epoch_visits_every_used_token_once(n, batch, seq):
    tokens = np.arange(n, dtype=np.int64)
    if n // batch < seq + 1:
        with pytest.raises(RnnkitError):
            StreamBatches(tokens, batch, seq)
        return
    b = StreamBatches(tokens, batch, seq)
    seen = torch.cat([b.batch(s)[1].flatten() for s in range(b.windows_per_epoch)])
    per_stream = n // batch
    assert len(set(seen.tolist())) == len(seen)  # no target twice in an epoch
    # every stream is read from its second token to as far as whole windows reach
    expected = {r * per_stream + t for r in range(batch)
                for t in range(1, b.windows_per_epoch * seq + 1)}
    assert set(seen.tolist()) == expected
    assert per_stream - 1 - b.windows_per_epoch * seq < seq  # less than one window left over


@given(temperature=st.floats(allow_nan=True, allow_infinity=True),
       top_k=st.one_of(st.none(), st.integers(-5, 100)),
       top_p=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
@settings(max_examples=300, deadline=None)
def test_sampling_options_are_accepted_exactly_when_valid(temperature, top_k, top_p):
    valid = (0 < temperature < math.inf and (top_k is None or top_k >= 1)
             and (top_p is None or 0 < top_p <= 1))
    if valid:
        SamplingConfig(temperature, top_k, top_p)
    else:
        with pytest.raises(RnnkitError):
            SamplingConfig(temperature, top_k, top_p)
    assert not (valid and math.isnan(temperature))

"""Parameter/FLOP counting conventions: hand-computed counts, converters, validation, recording."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scalefit.conventions import (
    Counting,
    ModelShape,
    compute,
    convert_compute,
    convert_params,
    static_table,
    tokens_for_compute,
)
from scalefit.errors import ConfigError, DataError
from scalefit.laws import get_law

# GPT-2 small: 12 layers, d 768, vocab 50257, context 1024, learned positions, tied head.
GPT2 = ModelShape(n_layer=12, d_model=768, vocab_size=50257, context=1024, learned_pos=True)
NON_EMBEDDING = 12 * (4 * 768**2 + 2 * 768 * 3072 + 2 * 768) + 768  # 84,953,856
HEAD = 50257 * 768  # 38,597,376


def test_parameter_counts_match_hand_computation():
    assert GPT2.n_params("non_embedding") == NON_EMBEDDING == 84_953_856
    assert GPT2.n_params("standard") == NON_EMBEDDING + HEAD == 123_551_232
    # tied: the head is the embedding, counted once; plus 1024 x 768 learned positions
    assert GPT2.n_params("total") == NON_EMBEDDING + HEAD + 1024 * 768 == 124_337_664
    untied = ModelShape(n_layer=2, d_model=64, vocab_size=100, context=32, d_ff=128, tied=False)
    assert untied.n_params("total") == 2 * (4 * 64 * 64 + 2 * 64 * 128 + 128) + 64 + 2 * 100 * 64


def test_flops_per_token_conventions():
    assert GPT2.flops_per_token() == 6.0 * 124_337_664
    attn = GPT2.flops_per_token({"params": "non_embedding", "flops": "6N+attn"})
    assert attn == 6 * 84_953_856 + 6 * 12 * 1024 * 768 == 566_346_240


def test_compute_and_tokens_are_inverse():
    n, d = np.array([1e8, 4e8]), np.array([2e9, 8e9])
    c = compute(n, d)
    np.testing.assert_allclose(c, 6 * n * d)
    np.testing.assert_allclose(tokens_for_compute(c, n), d)


def test_converters_use_model_shapes():
    runs = pd.DataFrame(
        {"n_layer": [12, 2], "d_model": [768, 64], "vocab_size": [50257, 100], "context": [1024, 32]}
    )
    np.testing.assert_array_equal(convert_params(runs, "non_embedding")[:1], [NON_EMBEDDING])
    src, dst = Counting("non_embedding", "6N"), Counting("standard", "6N")
    c = np.array([1e18, 1e15])
    out = convert_compute(c, runs, src=src, dst=dst)
    assert out[0] == pytest.approx(1e18 * (NON_EMBEDDING + HEAD) / NON_EMBEDDING, rel=1e-12)
    with pytest.raises(DataError) as err:
        convert_params(runs.drop(columns="context"), "total")
    assert err.value.column == "context"


def test_invalid_conventions_name_the_field():
    with pytest.raises(ConfigError) as err:
        Counting(params="embedding")
    assert err.value.field == "params"
    with pytest.raises(ConfigError) as err:
        Counting(flops="2N")
    assert err.value.field == "flops"
    with pytest.raises(ConfigError) as err:
        ModelShape(n_layer=0, d_model=8, vocab_size=8, context=8)
    assert err.value.field == "n_layer"


def test_counting_is_recorded_in_law_config_and_round_trips():
    law = get_law("overtraining", counting={"params": "non_embedding", "flops": "6N"})
    cfg = json.loads(json.dumps(law.config()))
    assert cfg["counting"] == {"params": "non_embedding", "flops": "6N"}
    assert get_law("overtraining", **cfg).counting == Counting("non_embedding", "6N")


def test_static_table_names_the_missing_column():
    with pytest.raises(DataError) as err:
        static_table(pd.DataFrame({"N": [1.0]}), ("N", "D"), law="overtraining")
    assert err.value.column == "D"

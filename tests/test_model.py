"""The GPT model: exact parameter and FLOP counts by hand, causality, tying, initial loss."""

from __future__ import annotations

import math

import pytest
import torch

from scalefit.errors import ConfigError
from scalefit.proxy.config import ModelConfig
from scalefit.proxy.model import GPT, flops_per_token, model_shape, n_params, n_params_nonembed, peak_flops

# A: 2 layers, C=32, 4 heads, T=64, V=256, rotary, tied.
#    block = qkv 3*32^2 + proj 32^2 + mlp 2*4*32^2 + 2 norms 2*32 = 3072+1024+8192+64 = 12352
#    non-embedding = 2*12352 + final norm 32 = 24736; total = 24736 + emb 256*32 = 32928
#    6N = 6*24736 = 148416; 6N+attn:standard = 6*(24736 + head 8192) + 6*2*64*32 = 197568 + 24576 = 222144
A = ModelConfig(n_layer=2, d_model=32, n_head=4, context=64)
# B: 3 layers, C=48, 6 heads, T=32, V=100, learned positions, untied head.
#    block = 4*2304 + 8*2304 + 96 = 27744; non-embedding = 3*27744 + 48 = 83280
#    total = 83280 + emb 4800 + positions 32*48=1536 + head 4800 = 94416
#    6N = 499680; 6N+attn:standard = 6*(83280 + 4800) + 6*3*32*48 = 528480 + 27648 = 556128
B = ModelConfig(
    n_layer=3, d_model=48, n_head=6, context=32, vocab_size=100, pos="learned", tie_embeddings=False
)
HAND = {A: (24736, 32928, 148416.0, 222144.0), B: (83280, 94416, 499680.0, 556128.0)}


@pytest.mark.parametrize("cfg", [A, B])
def test_counts_match_hand_computation(cfg):
    nonembed, total, six_n, full = HAND[cfg]
    assert n_params_nonembed(cfg) == nonembed
    assert n_params(cfg) == total
    assert sum(p.numel() for p in GPT(cfg).parameters()) == total  # the module agrees
    assert flops_per_token(cfg, "6N:non_embedding") == six_n
    assert flops_per_token(cfg, "6N+attn:standard") == full
    assert model_shape(cfg).n_params("total") == total  # scalefit.conventions agrees
    with pytest.raises(ConfigError):
        flops_per_token(cfg, "6N:everything")


@pytest.mark.parametrize("cfg", [A, B])
def test_forward_is_causal_and_starts_near_uniform(cfg):
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    x, targets = torch.randint(0, cfg.vocab_size, (2, 2, cfg.context))
    logits, loss = model(x, targets)
    assert logits.shape == (2, cfg.context, cfg.vocab_size)
    assert abs(loss.item() - math.log(cfg.vocab_size)) < 0.1  # std-0.02 init: near-uniform predictions
    y = x.clone()
    y[:, -1] = (y[:, -1] + 1) % cfg.vocab_size  # change only the last token
    with torch.no_grad():
        same = model(y)[0][:, :-1]
    assert torch.allclose(logits[:, :-1], same, atol=1e-6)
    with pytest.raises(ConfigError):
        model(torch.zeros(1, cfg.context + 1, dtype=torch.long))


def test_tied_head_shares_storage_and_residual_init_is_scaled():
    tied, untied = GPT(A), GPT(B)
    assert tied.head.weight.data_ptr() == tied.tok_emb.weight.data_ptr()
    assert untied.head.weight.data_ptr() != untied.tok_emb.weight.data_ptr()
    std = GPT(ModelConfig(8, 64, 4, 16)).blocks[0].mlp.proj.weight.std().item()
    assert abs(std - 0.02 / math.sqrt(16)) < 0.001


def test_no_peak_flops_on_cpu():
    assert peak_flops(torch.device("cpu")) is None

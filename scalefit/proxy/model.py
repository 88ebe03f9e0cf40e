"""A small decoder-only transformer (GPT), in the spirit of nanoGPT's model.py, plus exact counts.

Shapes: B = batch, T = sequence length (<= context), C = d_model, H = n_head, D = C // H (head dim),
V = vocab_size. Blocks are pre-norm (x + attn(ln(x)), x + mlp(ln(x))), no biases anywhere, LayerNorm
with a weight only: so the parameter count is exactly the one ``scalefit.conventions`` assumes.

Counting (used for the runs table and MFU):
- ``n_params``: every trainable parameter (a tied head is counted once).
- ``n_params_nonembed``: Kaplan's N, the blocks plus the final norm: ``L (12 C^2 + 2 C) + C`` for
  ``mlp_ratio = 4`` (no token or position embedding, no head).
- ``flops_per_token(cfg, convention)``: training FLOPs per token (forward + backward = 3 x forward) in
  the terms of ``scalefit.conventions``: "6N:non_embedding" is 6 x Kaplan's N; "6N+attn:standard" is
  6 x (N + head V C) plus the attention term 6 L T C (T = context).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scalefit.conventions import Counting, ModelShape
from scalefit.errors import ConfigError
from scalefit.proxy.config import FLOP_CONVENTIONS, ModelConfig

__all__ = ["GPT", "n_params", "n_params_nonembed", "flops_per_token", "model_shape", "peak_flops"]


class Rotary(nn.Module):
    """Rotary position embedding (Su et al. 2021): rotate pairs of q/k channels by position angles."""

    def __init__(self, head_dim: int, context: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (D/2,)
        angles = torch.outer(torch.arange(context, dtype=torch.float32), inv_freq)  # (context, D/2)
        # Buffers, not parameters; not saved in checkpoints (recomputed from the config).
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, T, D) -> same shape, channel pairs (i, i + D/2) rotated by position."""
        t = x.size(-2)
        cos, sin = self.cos[:t].to(x.dtype), self.sin[:t].to(x.dtype)  # (T, D/2)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)  # 3 C^2 parameters
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)  # C^2 parameters
        self.rotary = Rotary(cfg.head_dim, cfg.context) if cfg.pos == "rope" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)  # 3 x (B, T, C)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D), flash where available
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, c))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hidden = cfg.mlp_ratio * cfg.d_model
        self.fc = nn.Linear(cfg.d_model, hidden, bias=False)  # C x 4C
        self.proj = nn.Linear(hidden, cfg.d_model, bias=False)  # 4C x C

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model, bias=False)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model, bias=False)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token ids (B, T) -> logits (B, T, V); with targets, also the mean cross-entropy in nats/token."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.context, cfg.d_model) if cfg.pos == "learned" else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=False)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.tok_emb.weight  # one (V, C) matrix, counted once
        self.apply(self._init_weights)
        # GPT-2: scale residual-branch outputs by 1/sqrt(2L) so the residual stream's variance stays O(1).
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        t = idx.size(1)
        if t > self.cfg.context:
            raise ConfigError("sequence longer than the model context", field="model.context", value=t)
        x = self.tok_emb(idx)  # (B, T, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))  # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


def n_params_nonembed(cfg: ModelConfig) -> int:
    """Blocks + final norm: per block qkv 3C^2, proj C^2, MLP 2 r C^2, two norm weights 2C."""
    c = cfg.d_model
    per_block = 4 * c * c + 2 * cfg.mlp_ratio * c * c + 2 * c
    return cfg.n_layer * per_block + c


def n_params(cfg: ModelConfig) -> int:
    """All trainable parameters: non-embedding + token embedding (+ position table) (+ untied head)."""
    emb = cfg.vocab_size * cfg.d_model
    pos = cfg.context * cfg.d_model if cfg.pos == "learned" else 0
    head = 0 if cfg.tie_embeddings else cfg.vocab_size * cfg.d_model
    return n_params_nonembed(cfg) + emb + pos + head


def model_shape(cfg: ModelConfig) -> ModelShape:
    """The model as a ``scalefit.conventions.ModelShape`` (for counting under any convention)."""
    return cfg.shape()


def flops_per_token(cfg: ModelConfig, convention: str = "6N+attn:standard") -> float:
    """Training FLOPs per token under ``convention`` ("<flops>:<params>", see FLOP_CONVENTIONS)."""
    if convention not in FLOP_CONVENTIONS:
        raise ConfigError(
            "unknown FLOP convention",
            field="flops_convention",
            value=convention,
            fix=f"use one of {FLOP_CONVENTIONS}",
        )
    flops, params = convention.split(":")
    return model_shape(cfg).flops_per_token(Counting(params=params, flops=flops))


# Dense bf16 tensor-core peaks in FLOP/s (vendor datasheets, SXM parts), for MFU.
_PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def peak_flops(device: torch.device) -> float | None:
    """The bf16 dense peak of a CUDA device by name, or None when unknown (MFU is then not logged)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in _PEAKS.items() if key in name), None)

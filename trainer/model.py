"""A small GPT-2-style decoder (nanoGPT layout) with a KV cache for incremental greedy decoding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from divsweep.trainer.config import ModelConfig

IGNORE = -100  # label for positions that carry no loss (prompt and padding)


class KVCache:
    """Keys/values of every layer, allocated once per decode; each step appends one position."""

    def __init__(self, n_layers: int, max_len: int) -> None:
        self.n_layers = n_layers
        self.max_len = max_len
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.length = 0  # positions filled, identical across layers after a full forward

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.k is None:
            # Allocated from the first keys, so it has their dtype: bf16 under autocast.
            B, H, _, D = k.shape
            self.k = k.new_empty(self.n_layers, B, H, self.max_len, D)
            self.v = v.new_empty(self.n_layers, B, H, self.max_len, D)
        start, end = self.length, self.length + k.shape[2]
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


Rotary = tuple[torch.Tensor, torch.Tensor]  # cos, sin: ([B,] 1, T, head_dim / 2), heads broadcast


def rotary_tables(head_dim: int, max_len: int, base: float = 10_000.0) -> Rotary:
    """cos and sin of RoPE's angles, (max_len, head_dim / 2), indexed by absolute position."""
    inv_freq = base ** -(torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, rotary: Rotary) -> torch.Tensor:
    """Rotate each (first half, second half) pair of x's channels by its position's angle."""
    cos, sin = (t.to(x.dtype) for t in rotary)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None = None,
        layer: int = 0,
        rotary: Rotary | None = None,
    ) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
        if rotary is not None:  # keys enter the cache already rotated to their own position
            q, k = rotate(q, rotary), rotate(k, rotary)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        dropout = self.dropout if self.training else 0.0
        # Training passes no mask (right padding never leaks backwards) so SDPA can pick the
        # flash kernel on GPU; decoding needs an explicit mask for left-padded prompts.
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=mask is None
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model)
        self.proj = nn.Linear(4 * cfg.d_model, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, mask=None, cache=None, layer=0, rotary=None) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.ln1(x), mask, cache, layer, rotary))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model) if cfg.positions == "learned" else None
        if cfg.positions == "rope":
            cos, sin = rotary_tables(cfg.d_model // cfg.n_heads, cfg.max_len)
            # buffers follow .to(device); not persistent: a function of the config alone
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, vocab_size, bias=False)
        self.apply(self._init)
        # Embeddings start at unit scale (PyTorch's default), not GPT-2's 0.02, and the output
        # head is not tied to them: on the rewrite task a weak initial position signal left
        # models on the loss plateau of "no copying yet" for hundreds of steps (measured on
        # the CPU setting: unit-scale + untied reached unseen exact match 0.31 by step 800,
        # 0.02-scale tied or untied, and unit-scale tied, all stayed at 0.00).
        nn.init.normal_(self.tok.weight, std=1.0)
        if self.pos is not None:
            nn.init.normal_(self.pos.weight, std=1.0)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # GPT-2's scaled init of residual projections
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self,
        idx: torch.Tensor,
        positions: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, V). Without `positions`, token t sits at position t (right padding)."""
        if positions is None:
            positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok(idx)
        rotary = None
        if self.pos is not None:
            x = x + self.pos(positions)
        else:
            # (T, D/2) for shared positions, (B, T, D/2) per row; heads broadcast over dim 1
            rotary = tuple(t[positions].unsqueeze(-3) for t in (self.rope_cos, self.rope_sin))
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, cache, i, rotary)
        if cache is not None:
            cache.length += idx.shape[1]
        return self.head(self.ln_f(x))

    def loss(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over labelled (output) tokens only."""
        logits = self(inputs)
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

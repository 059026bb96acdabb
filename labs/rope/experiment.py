"""The chapter's experiment: tiny decoder-only transformers on a task that needs relative positions.

Task ("look back"): a sequence of random tokens; at every position t >= offset
the model must output the token ``offset`` places earlier. The answer depends
only on the relative distance, so a position encoding that generalises to
unseen lengths should keep solving it beyond the training length.

Only the position encoding differs between models: none (NoPE), sinusoidal
absolute, RoPE, ALiBi. The RoPE model is trained once; the context-extension
methods (linear interpolation, NTK, dynamic NTK, YaRN) reuse its weights and
only change its frequencies at evaluation time.

Every random draw (initial weights, training and evaluation batches) comes from
the ``seed`` a function is given; the chapter derives it from the book seed.
The global RNG is left as it was.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from .._checks import choice, whole_number
from .._seed import global_rng_from
from .._seed import seed_generator as _generator
from ..book import progress
from . import reference
from . import apply_rope_qk, rope_frequencies

ENCODINGS = ("nope", "sinusoidal", "rope", "alibi")


@dataclass(frozen=True)
class TaskConfig:
    vocab: int = 16
    offset: int = 6
    train_len: int = 32


def lookback_batch(config: TaskConfig, batch: int, length: int, generator: torch.Generator):
    """Random tokens and targets: target[t] = tokens[t - offset], and -100 (ignored) for t < offset."""
    tokens = torch.randint(0, config.vocab, (batch, length), generator=generator)
    targets = torch.full_like(tokens, -100)
    targets[:, config.offset :] = tokens[:, : -config.offset]
    return tokens, targets


class Attention(nn.Module):
    """Causal multi-head self-attention whose position handling is chosen by ``encoding``."""

    def __init__(self, d_model: int, n_heads: int, encoding: str):
        super().__init__()
        self.n_heads, self.head_dim, self.encoding = n_heads, d_model // n_heads, encoding
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.register_buffer("slopes", reference.alibi_slopes(n_heads).float(), persistent=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, float] | None) -> torch.Tensor:
        batch, length, d_model = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        logit_scale = 1 / math.sqrt(self.head_dim)
        if self.encoding == "rope":
            inv_freq, attention_factor = rope
            positions = torch.arange(length, dtype=torch.float32, device=x.device)
            q, k = apply_rope_qk(q, k, positions, inv_freq.to(x.device))
            logit_scale *= attention_factor**2  # YaRN's temperature 1/t = attention_factor^2
        logits = logit_scale * q @ k.transpose(-1, -2)
        if self.encoding == "alibi":
            logits = logits + reference.alibi_bias(self.slopes, length)
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        weights = torch.softmax(logits.masked_fill(~causal, float("-inf")), dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(batch, length, d_model))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, encoding: str):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attention = Attention(d_model, n_heads, encoding)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x, rope):
        x = x + self.attention(self.norm1(x), rope)
        return x + self.mlp(self.norm2(x))


class TinyDecoder(nn.Module):
    """A pre-norm decoder-only transformer: token embedding, ``n_layers`` blocks, a linear head."""

    def __init__(self, vocab: int, encoding: str, *, d_model: int = 64, n_heads: int = 4, n_layers: int = 2,
                 base: float = 10000.0):
        super().__init__()
        choice("TinyDecoder", "encoding", encoding, ENCODINGS)
        self.encoding, self.base, self.head_dim = encoding, base, d_model // n_heads
        self.embed = nn.Embedding(vocab, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, encoding) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, tokens: torch.Tensor, rope: tuple[torch.Tensor, float] | None = None) -> torch.Tensor:
        """Logits (B, T, vocab). ``rope`` = (inv_freq, attention_factor) overrides the trained frequencies."""
        x = self.embed(tokens)
        if self.encoding == "sinusoidal":
            x = x + reference.sinusoidal_encoding(tokens.shape[1], x.shape[-1]).to(x.dtype)
        if self.encoding == "rope" and rope is None:
            inv_freq, factor = rope_frequencies(self.head_dim, base=self.base)
            rope = (inv_freq.float(), factor)
        for block in self.blocks:
            x = block(x, rope)
        return self.head(self.norm(x))


def train_lookback(encoding: str, config: TaskConfig = TaskConfig(), *, seed: int, steps: int = 400,
                   batch: int = 64, lr: float = 3e-3, **model_kwargs) -> tuple[TinyDecoder, list[float]]:
    """Train one TinyDecoder on the look-back task at ``config.train_len``; returns (model, losses).

    ``seed`` fixes the initial weights and the training batches (the same for every encoding).
    """
    init = _generator("train_lookback", seed, "init")
    with global_rng_from(init):  # the layers draw their initial weights from the global RNG
        model = TinyDecoder(config.vocab, encoding, **model_kwargs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    generator = _generator("train_lookback", seed, "data")
    losses = []
    for _ in progress(range(steps), desc=f"train {encoding}", leave=False):
        tokens, targets = lookback_batch(config, batch, config.train_len, generator)
        logits = model(tokens)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), losses


def rope_for(method: str | None, head_dim: int, base: float, factor: float, train_len: int, length: int):
    """(inv_freq, attention_factor) of a context-extension method at evaluation length ``length``."""
    if method is None:
        inv_freq, attention = rope_frequencies(head_dim, base=base)
    else:
        inv_freq, attention = rope_frequencies(
            head_dim, base=base, scaling=method, factor=factor, original_max_position=train_len, seq_len=length
        )
    return inv_freq.float(), attention


@torch.no_grad()
def per_position_accuracy(model: TinyDecoder, config: TaskConfig, length: int, *, seed: int, rope=None,
                          batch: int = 64) -> torch.Tensor:
    """Accuracy at each position t (NaN where there is no target), on fresh sequences of ``length``.

    ``seed`` fixes the evaluation batch: the same seed gives every model and method the same sequences.
    """
    generator = _generator("per_position_accuracy", seed, "eval")
    tokens, targets = lookback_batch(config, batch, length, generator)
    correct = (model(tokens, rope).argmax(-1) == targets).float()
    accuracy = correct.mean(0)
    accuracy[: config.offset] = float("nan")
    return accuracy


def fine_tune(model: TinyDecoder, method: str, factor: float, config: TaskConfig = TaskConfig(), *, seed: int,
              steps: int = 50, batch: int = 32, lr: float = 1e-3) -> TinyDecoder:
    """A short fine-tune of a copy of the RoPE ``model`` with ``method``'s frequencies at factor x the training length.

    ``seed`` fixes the fine-tuning batches.
    """
    if model.encoding != "rope":
        raise ValueError(f"fine_tune: only a RoPE model can change its frequencies, got {model.encoding!r}")
    tuned = copy.deepcopy(model).train()
    length = int(round(factor * config.train_len))
    rope = rope_for(method, tuned.head_dim, tuned.base, factor, config.train_len, length)
    optimizer = torch.optim.AdamW(tuned.parameters(), lr=lr, weight_decay=0.0)
    generator = _generator("fine_tune", seed, "data")
    for _ in progress(range(steps), desc=f"fine-tune {method} x{factor:g}", leave=False):
        tokens, targets = lookback_batch(config, batch, length, generator)
        loss = nn.functional.cross_entropy(tuned(tokens, rope).flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return tuned.eval()

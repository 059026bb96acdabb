"""The chapter's experiment: key-value retrieval at distances never seen in training.

Task ("retrieval"): a sequence lists ``n_pairs`` distinct keys, each followed by
its value, then asks for ``n_queries`` of those keys again; at each query the
model must output the value that followed that key. The key can sit anywhere
before the query, so at an evaluation length of s times the training length
the answer lies at distances up to s times those seen in training. Solving it
needs a local step (a value must learn which key precedes it: distance 1) and a
long-range, content-based step (a query must find the matching key, wherever it
is): the two-layer "induction" circuit.

The models are tiny attention-only decoders, and every (encoding, seed) pair is
one *member* of a ``StackedDecoder``: all members train side by side in one
batched forward pass, each on its own seed's data, with their own parameters
(Adam is element-wise, so this is exactly training them one by one, at a
fraction of the cost). Only the position encoding differs between encodings:
none (NoPE), sinusoidal absolute, RoPE, ALiBi. The context-extension methods
(position interpolation, NTK, YaRN) reuse the RoPE members' weights and only
change their frequencies at evaluation time, or after a short fine-tune.

Every random draw comes from the ``seed`` a function is given; the global RNG
is left as it was.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .._checks import choice, whole_number
from .._seed import seed_generator as _generator
from ..book import progress
from . import reference
from . import rope_frequencies

ENCODINGS = ("nope", "sinusoidal", "rope", "alibi")


@dataclass(frozen=True)
class TaskConfig:
    """Key-value retrieval: ``keys`` key tokens, ``values`` value tokens, training length ``train_len``."""

    keys: int = 64
    values: int = 16
    train_len: int = 32

    @property
    def vocab(self) -> int:
        return self.keys + self.values

    @property
    def max_len(self) -> int:
        """The longest sequence whose keys are all distinct (3/8 of its tokens are keys)."""
        return 8 * self.keys // 3 // 8 * 8


def layout(length: int) -> tuple[int, int]:
    """(n_pairs, n_queries) of a sequence of ``length`` tokens: 2 n_pairs + n_queries = length."""
    return 3 * length // 8, length // 4


def _check_length(fn: str, config: TaskConfig, length) -> int:
    length = whole_number(fn, "length", length)
    if length % 8 or length > config.max_len:
        raise ValueError(
            f"{fn}: length must be a multiple of 8 and at most {config.max_len} "
            f"(every key distinct among {config.keys}), got {length}"
        )
    return length


def retrieval_batch(config: TaskConfig, shape: tuple[int, ...], length: int, generator: torch.Generator):
    """Sequences of ``shape`` + (length,): tokens, targets (-100 where none) and the query-key distances.

    Keys are ids 0..keys-1 and values keys..keys+values-1. ``distance[..., i]`` is how
    far back from the i-th query its key sits (the value is one token nearer).
    """
    length = _check_length("retrieval_batch", config, length)
    n_pairs, n_queries = layout(length)
    keys = torch.rand(*shape, config.keys, generator=generator).argsort(-1)[..., :n_pairs]
    values = torch.randint(config.keys, config.vocab, (*shape, n_pairs), generator=generator)
    asked = torch.rand(*shape, n_pairs, generator=generator).argsort(-1)[..., :n_queries]
    tokens = torch.cat((torch.stack((keys, values), -1).flatten(-2), keys.gather(-1, asked)), -1)
    targets = torch.full_like(tokens, -100)
    targets[..., 2 * n_pairs :] = values.gather(-1, asked)
    query_position = 2 * n_pairs + torch.arange(n_queries)
    distance = query_position - 2 * asked
    return tokens, targets, distance


class StackedDecoder(nn.Module):
    """``len(members)`` independent attention-only decoders, run as one batched model.

    ``members`` lists (encoding, seed): member m's initial weights come from its seed
    and encoding alone. Inputs are (M, B, T) token ids, one batch per member.
    """

    def __init__(self, members: Sequence[tuple[str, int]], vocab: int, *, d_model: int = 32, n_heads: int = 2,
                 n_layers: int = 2, base: float = 10000.0):
        super().__init__()
        fn = "StackedDecoder"
        if not members:
            raise ValueError(f"{fn}: members must be a non-empty list of (encoding, seed), got {members!r}")
        for encoding, _ in members:
            choice(fn, "encoding", encoding, ENCODINGS)
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise ValueError(f"{fn}: d_model / n_heads must be an even int (RoPE rotates pairs), "
                             f"got d_model={d_model}, n_heads={n_heads}")
        self.members = [(str(e), int(s)) for e, s in members]
        self.vocab, self.d_model, self.n_heads, self.n_layers = vocab, d_model, n_heads, n_layers
        self.head_dim, self.base = d_model // n_heads, float(base)
        shapes = {"embed": (vocab, d_model), "unembed": (d_model, vocab)}
        for layer in range(n_layers):
            shapes[f"qkv{layer}"] = (d_model, 3 * d_model)
            shapes[f"out{layer}"] = (d_model, d_model)
        init = [_generator(fn, seed, f"init/{encoding}") for encoding, seed in self.members]
        self.weights = nn.ParameterDict({
            name: nn.Parameter(torch.stack([
                torch.randn(shape, generator=g) * (1.0 if name == "embed" else shape[0] ** -0.5) for g in init
            ]))
            for name, shape in shapes.items()
        })
        flags = lambda name: torch.tensor([e == name for e, _ in self.members])  # noqa: E731
        self.register_buffer("is_sinusoidal", flags("sinusoidal"), persistent=False)
        self.register_buffer("is_rope", flags("rope"), persistent=False)
        self.register_buffer("is_alibi", flags("alibi"), persistent=False)
        self.register_buffer("slopes", reference.alibi_slopes(n_heads).float(), persistent=False)

    def default_rope(self) -> tuple[torch.Tensor, float]:
        inv_freq, factor = rope_frequencies(self.head_dim, base=self.base)
        return inv_freq.float(), factor

    def select(self, indices: Sequence[int]) -> "StackedDecoder":
        """A copy holding only the members at ``indices`` (their weights cloned)."""
        out = copy.deepcopy(self)
        out.members = [self.members[i] for i in indices]
        index = torch.as_tensor(list(indices))
        for name, weight in self.weights.items():
            out.weights[name] = nn.Parameter(weight.detach()[index.to(weight.device)].clone())
        for name in ("is_sinusoidal", "is_rope", "is_alibi"):
            flags = getattr(self, name)
            setattr(out, name, flags[index.to(flags.device)])
        return out

    def forward(self, tokens: torch.Tensor, rope: tuple[torch.Tensor, float] | None = None, *,
                drop_pairs: Sequence[int] = (), attention: list | None = None, last: int | None = None) -> torch.Tensor:
        """Logits (M, B, T, vocab), or of the ``last`` positions only.

        ``rope`` = (inv_freq, attention_factor) replaces the trained frequencies of the RoPE
        members; ``drop_pairs`` zeroes those rotated pairs of every query and key (an ablation);
        a list passed as ``attention`` receives each layer's (M, B, H, T, T) attention weights.
        """
        n, batch, length = tokens.shape
        w = self.weights
        dev = w["embed"].device
        tokens = tokens.to(dev)
        x = w["embed"][torch.arange(n, device=dev)[:, None, None], tokens]
        if self.is_sinusoidal.any():
            table = reference.sinusoidal_encoding(length, self.d_model).to(dev, x.dtype)
            x = x + self.is_sinusoidal[:, None, None, None] * table
        inv_freq, factor = rope if rope is not None else self.default_rope()
        # Per member, the rotation (identity unless RoPE) and the additive logit bias (ALiBi's
        # distance penalty, and -inf above the diagonal for causality), built once for every layer.
        cos, sin = reference.rotation_tables(torch.arange(length), inv_freq.cpu(), x.dtype)
        cos, sin = cos.to(dev) * factor, sin.to(dev) * factor
        rope_members = self.is_rope.nonzero()[:, 0]  # only these are rotated: the others' rotation is the identity
        causal = torch.zeros(length, length, dtype=x.dtype, device=dev).masked_fill(
            ~torch.ones(length, length, dtype=torch.bool, device=dev).tril(), float("-inf"))
        alibi = reference.alibi_bias(self.slopes.cpu(), length).to(dev, x.dtype)
        bias = causal + self.is_alibi[:, None, None, None, None] * alibi
        half = self.head_dim // 2
        keep = torch.ones(self.head_dim, dtype=x.dtype, device=dev)
        for j in drop_pairs:
            keep[j] = keep[j + half] = 0.0
        for layer in range(self.n_layers):
            h = F.layer_norm(x, (self.d_model,))
            qkv = torch.einsum("mbtd,mde->mbte", h, w[f"qkv{layer}"])
            q, k, v = qkv.view(n, batch, length, 3, self.n_heads, self.head_dim).permute(3, 0, 1, 4, 2, 5)
            if len(rope_members):
                q = q.index_put((rope_members,), reference.rotate(q[rope_members], cos, sin))
                k = k.index_put((rope_members,), reference.rotate(k[rope_members], cos, sin))
            if drop_pairs:
                q = q * keep
            logits = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + bias
            weights = torch.softmax(logits, dim=-1)
            if attention is not None:
                attention.append(weights.detach())
            mixed = (weights @ v).transpose(2, 3).reshape(n, batch, length, self.d_model)
            x = x + torch.einsum("mbtd,mde->mbte", mixed, w[f"out{layer}"])
        if last is not None:
            x = x[:, :, -last:]
        return torch.einsum("mbtd,mdv->mbtv", F.layer_norm(x, (self.d_model,)), w["unembed"])


def member_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each member's mean cross-entropy over the positions that have a target: shape (M,)."""
    losses = F.cross_entropy(logits.flatten(1, 2).transpose(1, 2), targets.flatten(1), reduction="none")
    mask = targets.flatten(1) >= 0
    return (losses * mask).sum(1) / mask.sum(1)


def _batches(model: StackedDecoder, config: TaskConfig, batch: int, length: int, generators: dict):
    """One batch per member, drawn from the member's seed: members sharing a seed see the same data."""
    drawn = {seed: retrieval_batch(config, (batch,), length, g) for seed, g in generators.items()}
    tokens = torch.stack([drawn[seed][0] for _, seed in model.members])
    targets = torch.stack([drawn[seed][1] for _, seed in model.members])
    return tokens, targets


def _fit(model: StackedDecoder, config: TaskConfig, *, steps: int, batch: int, lr: float, length: int,
         stream: str, rope=None, desc: str, on_step=None) -> torch.Tensor:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generators = {seed: _generator(stream, seed, "data") for seed in sorted({s for _, s in model.members})}
    losses = torch.empty(steps, len(model.members))
    model.train()
    for step in progress(range(steps), desc=desc, leave=False):
        tokens, targets = _batches(model, config, batch, length, generators)
        n_queries = layout(length)[1]  # only the queries have targets
        targets = targets[..., -n_queries:].to(model.weights["embed"].device)
        loss = member_losses(model(tokens, rope, last=n_queries), targets)
        optimizer.zero_grad()
        loss.sum().backward()  # members share no parameter: each gets its own loss's gradient
        optimizer.step()
        losses[step] = loss.detach().cpu()
        if on_step is not None:
            on_step(step + 1, steps)
    model.eval()
    return losses


def train_retrieval(members: Sequence[tuple[str, int]], config: TaskConfig = TaskConfig(), *, steps: int = 1500,
                    batch: int = 32, lr: float = 3e-3, on_step=None, device: torch.device | str | None = None,
                    **model_kwargs) -> tuple[StackedDecoder, torch.Tensor]:
    """Train every (encoding, seed) member at ``config.train_len``; returns (model, losses of shape (steps, M)).

    ``on_step(step, steps)``, if given, is called after every step (a widget's progress bar).
    ``device`` (default CPU) is where the model trains; the batches are drawn on the CPU.

    A member's initial weights and training batches depend on its seed alone (its
    encoding too, for the weights), not on the other members.
    """
    fn = "train_retrieval"
    steps, batch = whole_number(fn, "steps", steps, minimum=0), whole_number(fn, "batch", batch)
    for _, seed in members:
        _generator(fn, seed, "check")  # a clear error for a bad seed
    model = StackedDecoder(members, config.vocab, **model_kwargs)
    if device is not None:
        model = model.to(device)
    losses = _fit(model, config, steps=steps, batch=batch, lr=lr, length=config.train_len,
                  stream="train_retrieval", desc="train", on_step=on_step)
    return model, losses


def rope_for(method: str | None, head_dim: int, base: float, factor: float, train_len: int, *,
             beta_fast: float = 32.0, beta_slow: float = 1.0) -> tuple[torch.Tensor, float]:
    """(inv_freq, attention_factor) of a context-extension method stretching by ``factor``."""
    if method is None or factor == 1:
        inv_freq, attention = rope_frequencies(head_dim, base=base)
    else:
        inv_freq, attention = rope_frequencies(
            head_dim, base=base, scaling=method, factor=factor, original_max_position=train_len,
            seq_len=int(round(factor * train_len)), beta_fast=beta_fast, beta_slow=beta_slow,
        )
    return inv_freq.float(), attention


@torch.no_grad()
def evaluate(model: StackedDecoder, config: TaskConfig, length: int, *, seed: int, rope=None, batch: int = 64,
             drop_pairs: Sequence[int] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """(accuracy per member (M,), correct of shape (M, B, n_queries)) on fresh sequences of ``length``.

    ``seed`` fixes the evaluation sequences: every member, method and ablation sees the same ones.
    """
    fn = "evaluate"
    length = _check_length(fn, config, length)
    tokens, targets, _ = retrieval_batch(config, (batch,), length, _generator(fn, seed, "eval"))
    n_queries = layout(length)[1]
    logits = model(tokens.expand(len(model.members), -1, -1), rope, drop_pairs=drop_pairs, last=n_queries)
    correct = (logits.argmax(-1).cpu() == targets[:, -n_queries:]).float()
    return correct.mean((1, 2)), correct


def query_distances(config: TaskConfig, length: int, *, seed: int, batch: int = 64) -> torch.Tensor:
    """The (B, n_queries) query-key distances of ``evaluate``'s sequences for the same arguments."""
    fn = "evaluate"
    return retrieval_batch(config, (batch,), length, _generator(fn, seed, "eval"))[2]


def fine_tune(model: StackedDecoder, method: str, factor: float, config: TaskConfig = TaskConfig(), *, steps: int = 100,
              batch: int = 32, lr: float = 1e-3, **rope_kwargs) -> tuple[StackedDecoder, torch.Tensor]:
    """A short fine-tune of a copy of the RoPE members with ``method``'s frequencies at factor x the training length.

    Returns (the tuned copy, its losses (steps, M)). Each member's batches come from its seed.
    """
    fn = "fine_tune"
    if not all(e == "rope" for e, _ in model.members):
        raise ValueError(f"fine_tune: only RoPE members can change their frequencies, got {model.members!r}")
    length = _check_length(fn, config, int(round(factor * config.train_len)))
    tuned = copy.deepcopy(model)
    rope = rope_for(method, model.head_dim, model.base, factor, config.train_len, **rope_kwargs)
    losses = _fit(tuned, config, steps=whole_number(fn, "steps", steps), batch=batch, lr=lr, length=length,
                  stream="fine_tune", rope=rope, desc=f"fine-tune {method} x{factor:g}")
    return tuned, losses

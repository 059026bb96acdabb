"""The chapter's experiment: tiny one-layer models learn associative recall.

Each sequence holds ``n`` key-value pairs, one pair per position (the key's
and the value's embeddings added), then a query position carrying one of the
keys. The model must output that key's value. One attention layer suffices in
principle: match the query against the keys, copy the value. How many pairs
an attention form can keep apart is what the experiment measures.

Every random draw comes from the ``seed`` a function is given (the chapter
derives it from the book seed); nothing here reads or reseeds the global RNG.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import choice, positive, whole_number
from .._checks import generator as check_generator
from .._seed import seed_generator as _generator
from .._threads import threads
from ..book import progress
from . import (
    GAU,
    attention_entropy,
    attention_weights,
    favor_attention,
    linear_attention,
    linear_attention_weights,
    random_projection,
    rms_norm,
    softmax_attention,
)
from .reference import elu_plus_one

ATTENTION_KINDS = ("softmax", "linear", "linear+norm", "performer", "flash")
# How the linear forms are computed (never what: every method is exact). At the task's T <= 65 the masked
# T x T form is the fastest on a CPU, two to three times the chunked form's speed in training.
LINEAR_METHOD = "quadratic"


def recall_batch(batch: int, n_pairs: int, *, generator: torch.Generator, n_keys: int = 64, n_values: int = 16):
    """(keys, values, query, target): ``n_pairs`` distinct keys per sequence, random values, one queried key.

    Every draw comes from ``generator``.
    """
    check_generator("recall_batch", "generator", generator)
    if not 1 <= n_pairs <= n_keys:
        raise ValueError(f"recall_batch: n_pairs must be in [1, {n_keys}], got {n_pairs}")
    keys = torch.rand(batch, n_keys, generator=generator).argsort(-1)[:, :n_pairs]
    values = torch.randint(0, n_values, (batch, n_pairs), generator=generator)
    which = torch.randint(0, n_pairs, (batch,), generator=generator)
    rows = torch.arange(batch)
    return keys, values, keys[rows, which], values[rows, which]


class RecallModel(nn.Module):
    """Embeddings -> one causal attention layer (``kind``) with a residual -> read the value at the query.

    Every weight is drawn from ``seed`` (the layers' own initialisation, which would draw from the global
    RNG, is overwritten), so a model depends on its seed alone.
    """

    def __init__(self, kind: str, *, seed: int, d_model: int = 64, n_heads: int = 4, n_keys: int = 64,
                 n_values: int = 16, n_features: int = 64, chunk_size: int = 8):
        super().__init__()
        choice("RecallModel", "kind", kind, ATTENTION_KINDS)
        g = _generator("RecallModel", seed, "init")
        self.kind, self.n_heads = kind, n_heads
        self.key_embed = nn.Embedding(n_keys, d_model)
        self.value_embed = nn.Embedding(n_values, d_model)
        self.query_marker = nn.Parameter(torch.zeros(d_model))
        if kind == "flash":
            self.mixer = GAU(d_model, s=32, causal=True, chunk_size=chunk_size)
        else:
            self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
            self.out = nn.Linear(d_model, d_model, bias=False)
        if kind == "performer":
            self.register_buffer("projection", random_projection(n_features, d_model // n_heads, generator=g))
        self.norm = nn.LayerNorm(d_model)
        self.readout = nn.Linear(d_model, n_values)
        with torch.no_grad():  # the same initial weights for every seed-matched model
            for p in self.parameters():
                if p.ndim > 1:
                    nn.init.normal_(p, std=d_model**-0.5, generator=g)
            bound = 1 / math.sqrt(d_model)  # nn.Linear's own bias law, drawn from g
            self.readout.bias.uniform_(-bound, bound, generator=g)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "flash":
            return self.mixer(x)
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        if self.kind == "softmax":
            o = softmax_attention(q, k, v, causal=True)
        elif self.kind == "linear":
            o = linear_attention(q, k, v, causal=True, method=LINEAR_METHOD)
        elif self.kind == "linear+norm":  # TransNormer-style: no division by the normaliser, normalise the output
            o = rms_norm(linear_attention(q, k, v, causal=True, normalize=False, method=LINEAR_METHOD))
        else:
            o = favor_attention(q, k, v, self.projection, causal=True, method=LINEAR_METHOD)
        return self.out(o.transpose(1, 2).reshape(b, t, d))

    def forward(self, keys, values, query) -> torch.Tensor:
        x = self.key_embed(keys) + self.value_embed(values)
        x = torch.cat([x, (self.key_embed(query) + self.query_marker).unsqueeze(1)], dim=1)
        x = x + self.attend(x)
        return self.readout(self.norm(x[:, -1]))


@threads(1)  # tiny matrices: a second thread costs more than it saves, and stalls on a busy CPU
def train_recall(kind: str, *, seed: int, steps: int = 300, batch: int = 64, max_pairs: int = 32,
                 lr: float = 1e-2) -> tuple[RecallModel, list[float]]:
    """Train a ``RecallModel`` on 2..``max_pairs`` pairs; return it and its training accuracy per step.

    ``seed`` fixes the initial weights and the training batches (two separate streams).
    """
    fn = "train_recall"
    steps, batch = whole_number(fn, "steps", steps), whole_number(fn, "batch", batch)
    max_pairs = whole_number(fn, "max_pairs", max_pairs, minimum=2)
    lr = positive(fn, "lr", lr)
    model = RecallModel(kind, seed=seed)
    g = _generator(fn, seed, "data")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    accuracy = []
    for _ in progress(range(steps), desc=kind, leave=False):
        n = int(torch.randint(2, max_pairs + 1, (1,), generator=g))
        keys, values, query, target = recall_batch(batch, n, generator=g)
        logits = model(keys, values, query)
        loss = nn.functional.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        accuracy.append((logits.argmax(-1) == target).float().mean().item())
    return model, accuracy


@torch.no_grad()
def recall_accuracy(model: RecallModel, n_pairs: int, *, seed: int, batch: int = 512) -> float:
    """Held-out accuracy with ``n_pairs`` pairs per sequence, on a batch drawn from ``seed``.

    The same ``seed`` gives every model the same batch, so models are compared on the same sequences.
    """
    g = _generator("recall_accuracy", seed, f"eval/{n_pairs}")
    keys, values, query, target = recall_batch(batch, n_pairs, generator=g)
    return (model(keys, values, query).argmax(-1) == target).float().mean().item()


@torch.no_grad()
def query_entropy(model: RecallModel, n_pairs: int, *, seed: int, batch: int = 256) -> torch.Tensor:
    """Mean entropy (nats) of each head's attention from the query position, for softmax and linear models.

    Measured on a batch drawn from ``seed``.
    """
    if model.kind not in ("softmax", "linear"):
        raise ValueError(f"query_entropy: only 'softmax' and 'linear' models expose weights, got {model.kind!r}")
    g = _generator("query_entropy", seed, f"entropy/{n_pairs}")
    keys, values, query, _ = recall_batch(batch, n_pairs, generator=g)
    x = model.key_embed(keys) + model.value_embed(values)
    x = torch.cat([x, (model.key_embed(query) + model.query_marker).unsqueeze(1)], dim=1)
    b, t, d = x.shape
    q, k, _ = model.qkv(x).view(b, t, 3, model.n_heads, d // model.n_heads).permute(2, 0, 3, 1, 4)
    if model.kind == "softmax":
        weights = attention_weights(q, k, causal=True)
    else:
        weights = linear_attention_weights(elu_plus_one(q), elu_plus_one(k), causal=True)
    return attention_entropy(weights[:, :, -1]).mean(0)


@torch.no_grad()
def flash_live_fraction(model: RecallModel, n_pairs: int, *, seed: int, batch: int = 256) -> float:
    """Fraction of the query's squared-ReLU scores, against the keys in its own chunk, that are positive.

    relu(x)^2 has zero gradient for x <= 0: where this fraction is 0, the quadratic (in-chunk) route of
    FLASH passes nothing forward and no gradient back. Measured on a batch drawn from ``seed``.
    """
    fn = "flash_live_fraction"
    if not isinstance(model, RecallModel) or model.kind != "flash":
        raise ValueError(f"{fn}: model must be a RecallModel of kind 'flash', got {getattr(model, 'kind', model)!r}")
    n_pairs = whole_number(fn, "n_pairs", n_pairs)
    chunk = model.mixer.chunk_size
    start = (n_pairs // chunk) * chunk  # the query sits at position n_pairs; its chunk starts here
    if start == n_pairs:
        raise ValueError(f"{fn}: with n_pairs={n_pairs} the query starts a chunk of {chunk}: no key shares it")
    g = _generator(fn, seed, f"live/{n_pairs}")
    keys, values, query, _ = recall_batch(batch, n_pairs, generator=g)
    x = model.key_embed(keys) + model.value_embed(values)
    x = torch.cat([x, (model.key_embed(query) + model.query_marker).unsqueeze(1)], dim=1)
    gau = model.mixer
    z = nn.functional.silu(gau.to_z(x))
    qk = z.unsqueeze(-2) * gau.gamma + gau.beta  # (B, T, 4, s): q, k, q_lin, k_lin
    q, k = qk[:, -1, 0], qk[:, start:n_pairs, 1]  # the query; the keys in its chunk
    scores = (k @ q.unsqueeze(-1)).squeeze(-1)
    return (scores > 0).float().mean().item()


RECALL_STEPS = {"softmax": 300, "linear": 600, "linear+norm": 600, "performer": 600, "flash": 900}
RECALL_LEARNING_RATES = {"softmax": 1e-2, "linear": 1e-2, "linear+norm": 1e-2, "performer": 3e-3, "flash": 1e-2}
PAIR_COUNTS = (2, 4, 8, 16, 32, 64)


def recall_experiment(seed: int, *, steps: dict | None = None, pair_counts=PAIR_COUNTS,
                      kinds=ATTENTION_KINDS) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Train one model of every kind on ``seed`` and measure it: (metrics, training curves).

    Metrics: ``"<kind> n=<n>"`` held-out accuracy with n pairs; ``"<kind> gain"``, how much the training
    accuracy (mean over the last 100 steps) rose over the 100 steps before (near 0 once converged);
    ``"softmax entropy"``, ``"linear entropy"``, the query's attention entropy at 32 pairs; ``"flash live"``,
    the fraction of the query's in-chunk squared-ReLU scores that are positive at 4 pairs.
    """
    fn = "recall_experiment"
    steps = RECALL_STEPS | (steps or {})
    for kind in kinds:
        choice(fn, "kinds", kind, ATTENTION_KINDS)
        whole_number(fn, "steps", steps[kind], minimum=200)  # the convergence measure needs 200 steps
    metrics, curves = {}, {}
    for kind in kinds:
        model, curve = train_recall(kind, steps=steps[kind], lr=RECALL_LEARNING_RATES[kind], seed=seed)
        curves[kind] = curve
        for n in pair_counts:
            metrics[f"{kind} n={n}"] = recall_accuracy(model, n, seed=seed)
        metrics[f"{kind} gain"] = (sum(curve[-100:]) - sum(curve[-200:-100])) / 100
        if kind in ("softmax", "linear"):
            metrics[f"{kind} entropy"] = query_entropy(model, 32, seed=seed).mean().item()
        if kind == "flash":
            metrics["flash live"] = flash_live_fraction(model, 4, seed=seed)
    return metrics, curves

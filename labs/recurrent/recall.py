"""Associative recall with hand-set mixers: what a fixed-size state can hold, and what a gate buys.

A sequence writes ``n_pairs`` key-value pairs (random unit vectors in R^d), mixed
at random positions among ``n_distractors`` other tokens that write pairs nobody
asks about. Then every stored key is queried once (multi-query recall). No
weights are learned: each mixer's projections are set by hand (q = k = the key,
v = the value), so the probe measures what the *state* can hold and return, not
what training finds.

Mixers (``MIXERS``):

* ``"softmax"``: softmax attention over every written token (a KV cache of T x 2d floats);
* ``"linear"``: linear attention, h_t = h_{t-1} + k_t^T v_t (a d x d state);
* ``"decay"``: a fixed decay per step, h_t = gamma h_{t-1} + k_t^T v_t (RetNet);
* ``"selective"``: an input-dependent step, as Mamba's Delta_t: a distractor gets
  Delta = 0 (no decay, no write), a pair decays the state by gamma and writes.

Two measures: ``accuracy``, the share of queries whose read-out is closest (cosine)
to the right value among the stored values; ``read_error``, the root mean square of
||o - v|| / ||v|| over the queries (for a ``"linear"`` state with no distractors its
expectation is sqrt((n - 1) / d): each other pair adds crosstalk of variance 1/d).
"""

from __future__ import annotations

import math

import torch

from .._checks import choice, real_number, whole_number
from .._seed import seed_generator

MIXERS = ("softmax", "linear", "decay", "selective")


def recall_sequence(n_pairs: int, dim: int, *, n_distractors: int = 0, trials: int = 16, seed: int = 0) -> dict:
    """``trials`` independent sequences: keys, values (trials, T, d) and a mask of the pair positions (trials, T)."""
    fn = "recall_sequence"
    n_pairs = whole_number(fn, "n_pairs", n_pairs)
    dim = whole_number(fn, "dim", dim)
    n_distractors = whole_number(fn, "n_distractors", n_distractors, minimum=0)
    trials = whole_number(fn, "trials", trials)
    g = seed_generator(fn, seed, "recall")
    t = n_pairs + n_distractors
    keys, values = (torch.randn(trials, t, dim, generator=g, dtype=torch.float64) for _ in range(2))
    keys, values = keys / keys.norm(dim=-1, keepdim=True), values / values.norm(dim=-1, keepdim=True)
    order = torch.rand(trials, t, generator=g).argsort(dim=-1)
    is_pair = order < n_pairs  # n_pairs positions, uniformly at random, in each trial
    return {"keys": keys, "values": values, "is_pair": is_pair, "n_pairs": n_pairs}


def read_out(mixer: str, sequence: dict, *, gamma: float = 0.99) -> torch.Tensor:
    """What ``mixer`` returns when queried with each stored key after the whole sequence: (trials, n_pairs, d)."""
    from . import gated_linear_attention

    choice("read_out", "mixer", mixer, MIXERS)
    gamma = real_number("read_out", "gamma", gamma, low=0.0, high=1.0, low_open=True)
    k, v, is_pair = sequence["keys"], sequence["values"], sequence["is_pair"]
    trials, t, d = k.shape
    queries = k[is_pair].reshape(trials, -1, d)  # the stored keys, in order of position
    if mixer == "softmax":
        weights = torch.softmax(queries @ k.transpose(-1, -2) * math.sqrt(d), dim=-1)  # unit keys: logits q.k sqrt(d)
        return weights @ v
    log_gamma = math.log(gamma)
    if mixer == "linear":
        log_decay, write = torch.zeros(trials, t, dtype=k.dtype), torch.ones(trials, t, dtype=k.dtype)
    elif mixer == "decay":
        log_decay, write = torch.full((trials, t), log_gamma, dtype=k.dtype), torch.ones(trials, t, dtype=k.dtype)
    else:  # selective: Delta_t = 0 on a distractor (keep the state, write nothing)
        log_decay, write = torch.where(is_pair, log_gamma, 0.0).to(k.dtype), is_pair.to(k.dtype)
    _, state = gated_linear_attention((k * write[..., None])[:, None], (k * write[..., None])[:, None], v[:, None],
                                      log_decay[:, None], return_state=True)  # one head; state (trials, 1, d, d)
    return queries @ state[:, 0]


def recall_scores(mixer: str, sequence: dict, *, gamma: float = 0.99) -> dict:
    """Per trial: ``accuracy`` (nearest stored value is the right one) and RMS ``read_error``."""
    out = read_out(mixer, sequence, gamma=gamma)
    trials, n, d = out.shape
    stored = sequence["values"][sequence["is_pair"]].reshape(trials, n, d)
    cosine = (out / out.norm(dim=-1, keepdim=True).clamp_min(1e-300)) @ stored.transpose(-1, -2)
    accuracy = (cosine.argmax(-1) == torch.arange(n)).double().mean(-1)
    read_error = ((out - stored).norm(dim=-1) / stored.norm(dim=-1)).pow(2).mean(-1).sqrt()
    return {"accuracy": accuracy, "read_error": read_error}


def recall_probe(mixer: str, n_pairs: int, dim: int, *, n_distractors: int = 0, gamma: float = 0.99,
                 trials: int = 16, seed: int = 0) -> dict:
    """Mean ``accuracy`` and ``read_error`` of ``mixer`` over ``trials`` sequences drawn from ``seed``."""
    sequence = recall_sequence(n_pairs, dim, n_distractors=n_distractors, trials=trials, seed=seed)
    scores = recall_scores(mixer, sequence, gamma=gamma)
    return {"accuracy": float(scores["accuracy"].mean()), "read_error": float(scores["read_error"].pow(2).mean().sqrt())}


def state_floats(mixer: str, length: int, dim: int) -> int:
    """Floats one head keeps to answer the next query: 2 T d for a KV cache, d^2 for a recurrent state."""
    choice("state_floats", "mixer", mixer, MIXERS)
    length, dim = whole_number("state_floats", "length", length), whole_number("state_floats", "dim", dim)
    return 2 * length * dim if mixer == "softmax" else dim * dim

"""Trained multi-query associative recall (MQAR, as in Zoology): five one-layer mixers, one state-size knob.

Each sequence writes ``n_pairs`` key-value pairs, one pair per position (the key's and
the value's embeddings added, as in ``labs.attention.experiment``), then asks
``n_queries`` questions, one per position: a stored key, marked as a query. The model
must output the key's value at every query position. A one-layer model does it in
principle: match the query against the stored keys, copy the value.

Mixers (``MIXERS``), every one with ``n_heads`` heads of key width ``d_state``:

* ``"softmax"``: softmax attention (a KV cache that grows with the sequence);
* ``"linear"``: linear attention, h_t = h_{t-1} + k_t^T v_t (a d_state x d_value state per head);
* ``"decay"``: a fixed decay per head, RetNet's gamma_h = 1 - 2^(-5-h);
* ``"gla"``: a decay per key channel chosen by the input (GLA: logsigmoid(x W) / 16);
* ``"selective"``: one decay per head chosen by the input, -softplus(x W + b) exp(A_log),
  which also scales the write (Mamba-2's SSD, with dt).

Every random draw comes from the ``seed`` a function is given; nothing here reads or
reseeds the global RNG.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .._checks import choice, positive, whole_number
from .._checks import generator as check_generator
from .._seed import seed_generator as _generator
from .._threads import threads
from ..attention import softmax_attention
from . import gated_linear_attention

MIXERS = ("softmax", "linear", "decay", "gla", "selective")
# How the recurrences are computed (never what: every method is exact), timed on a CPU at the task's T = 32
# with a backward pass. One decay per step: the masked T x T form, a single batched product, is three times
# faster than the chunked form. One decay per key channel (GLA): the masked form builds a T x T x d_state
# tensor, and chunks of 8 are twice as fast.
GLA_METHOD, GLA_CHUNK_METHOD, GLA_CHUNK_SIZE = "quadratic", "chunk", 8
GLA_TEMPERATURE = 16.0  # GLA's tau: log_decay = logsigmoid(x W) / tau keeps the initial decays near 1


def mqar_batch(batch: int, n_pairs: int, n_queries: int, *, generator: torch.Generator, n_keys: int = 64,
               n_values: int = 16):
    """(keys, values, queries, targets): ``n_pairs`` distinct keys and random values per sequence (batch, n_pairs),
    then ``n_queries`` stored keys drawn with replacement and their values (batch, n_queries).

    Every draw comes from ``generator``.
    """
    fn = "mqar_batch"
    check_generator(fn, "generator", generator)
    batch = whole_number(fn, "batch", batch)
    n_keys = whole_number(fn, "n_keys", n_keys)
    n_values = whole_number(fn, "n_values", n_values)
    n_queries = whole_number(fn, "n_queries", n_queries)
    n_pairs = whole_number(fn, "n_pairs", n_pairs)
    if n_pairs > n_keys:
        raise ValueError(f"{fn}: n_pairs must be in [1, n_keys={n_keys}], got {n_pairs}")
    keys = torch.rand(batch, n_keys, generator=generator).argsort(-1)[:, :n_pairs]
    values = torch.randint(0, n_values, (batch, n_pairs), generator=generator)
    which = torch.randint(0, n_pairs, (batch, n_queries), generator=generator)
    return keys, values, keys.gather(1, which), values.gather(1, which)


class MQARModel(nn.Module):
    """Embeddings -> one causal mixer with a residual -> LayerNorm -> the value's logits at every query position.

    ``n_heads`` heads, each with queries and keys of width ``d_state`` and values of width
    ``d_model / n_heads``. ``seeds`` lists one seed per model: the models are held side by side
    (every weight has a leading seed axis) and run as one batch, which costs little more than one
    model on a CPU, where these tiny layers are all overhead. Model ``i``'s weights are drawn from
    ``seeds[i]`` alone, so it is the model a single seed would give.
    """

    def __init__(self, mixer: str, *, d_state: int, seeds, d_model: int = 64, n_heads: int = 2,
                 n_keys: int = 64, n_values: int = 16):
        super().__init__()
        fn = "MQARModel"
        choice(fn, "mixer", mixer, MIXERS)
        self.seeds, self.stacked = _seed_list(fn, seeds), isinstance(seeds, (list, tuple))
        self.d_state = whole_number(fn, "d_state", d_state)
        self.n_heads = whole_number(fn, "n_heads", n_heads)
        d_model = whole_number(fn, "d_model", d_model)
        n_keys, n_values = whole_number(fn, "n_keys", n_keys), whole_number(fn, "n_values", n_values)
        if d_model % n_heads:
            raise ValueError(f"{fn}: d_model must be a multiple of n_heads={n_heads}, got {d_model}")
        self.mixer, self.d_model, self.d_value = mixer, d_model, d_model // n_heads
        self.n_keys, self.n_values = n_keys, n_values
        h, ds = n_heads, d_state
        shapes = {"key_embed": (n_keys, d_model), "value_embed": (n_values, d_model), "qk": (d_model, 2 * h * ds),
                  "v": (d_model, d_model), "out": (d_model, d_model), "readout": (d_model, n_values)}
        if mixer == "gla":
            shapes["gate"] = (d_model, h * ds)  # one decay per head and key channel
        elif mixer == "selective":
            shapes["gate"] = (d_model, h)  # dt, one per head
        draws = {name: [] for name in [*shapes, "readout_bias", "gate_bias", "A_log"]}
        bound = 1 / math.sqrt(d_model)  # nn.Linear's own bias law
        for s in self.seeds:  # every weight of model i from seeds[i], none from the global RNG
            g = _generator(fn, s, "init")
            for name, shape in shapes.items():
                draws[name].append(torch.randn(shape, generator=g) * d_model**-0.5)
            draws["readout_bias"].append((torch.rand(n_values, generator=g) * 2 - 1) * bound)
            if mixer == "gla":
                draws["gate_bias"].append((torch.rand(h * ds, generator=g) * 2 - 1) * bound)
            elif mixer == "selective":  # Mamba's init: dt log-uniform in [1e-3, 1e-1], A_h = h + 1
                dt = torch.exp(torch.rand(h, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
                draws["gate_bias"].append(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
                draws["A_log"].append(torch.log(torch.arange(1, h + 1, dtype=torch.float32)))
        for name, tensors in draws.items():
            if tensors:
                setattr(self, name, nn.Parameter(torch.stack(tensors)))
        n = len(self.seeds)
        self.query_marker = nn.Parameter(torch.zeros(n, 1, 1, d_model))
        self.norm_weight = nn.Parameter(torch.ones(n, 1, 1, d_model))
        self.norm_bias = nn.Parameter(torch.zeros(n, 1, 1, d_model))
        if mixer == "decay":
            gammas = 1 - 2.0 ** (-5 - torch.arange(n_heads, dtype=torch.float32))
            self.register_buffer("log_gamma", gammas.log())

    def _embed(self, table: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(S, B, T) token ids -> (S, B, T, d_model), model i reading its own table."""
        return table[torch.arange(len(self.seeds))[:, None, None], tokens]

    def _flat(self, x: torch.Tensor, width: int) -> torch.Tensor:
        """(S, B, T, H * w) -> (S * B, H, T, w): the seeds become batch rows of the mixer."""
        s, b, t, _ = x.shape
        return x.reshape(s * b, t, self.n_heads, width).transpose(1, 2)

    def dt(self, x: torch.Tensor) -> torch.Tensor:
        """The selective mixer's step per head, (S * B, H, T), > 0."""
        raw = x @ self.gate[:, None] + self.gate_bias[:, None, None]
        return self._flat(F.softplus(raw), 1)[..., 0]

    def log_decay(self, x: torch.Tensor) -> torch.Tensor:
        """The mixer's log-decay for x (S, B, T, d_model): (S * B, H, T) or (S * B, H, T, d_state), all <= 0."""
        s, b, t, _ = x.shape
        if self.mixer == "linear":
            return x.new_zeros(s * b, self.n_heads, t)
        if self.mixer == "decay":
            return self.log_gamma[None, :, None].expand(s * b, -1, t)
        if self.mixer == "gla":
            gate = x @ self.gate[:, None] + self.gate_bias[:, None, None]
            return self._flat(F.logsigmoid(gate) / GLA_TEMPERATURE, self.d_state)
        a = self.A_log.exp().repeat_interleave(b, dim=0)[:, :, None]  # (S * B, H, 1)
        return -self.dt(x) * a

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        s, b, t, d = x.shape
        q, k = (x @ self.qk[:, None]).chunk(2, dim=-1)
        q, k = self._flat(q, self.d_state), self._flat(k, self.d_state)
        v = self._flat(x @ self.v[:, None], self.d_value)
        if self.mixer == "softmax":
            o = softmax_attention(q, k, v, causal=True)
        else:
            # Unit-length queries and keys (as in the hand-set probe): the read-out k_i h = v_i + crosstalk,
            # with no normaliser to divide by; the LayerNorm after the residual sets the scale.
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
            if self.mixer == "selective":
                v = v * self.dt(x)[..., None]  # SSD writes dt_s x_s
            log_decay = self.log_decay(x)
            if log_decay.ndim == 4:
                o = gated_linear_attention(q, k, v, log_decay, method=GLA_CHUNK_METHOD, chunk_size=GLA_CHUNK_SIZE)
            else:
                o = gated_linear_attention(q, k, v, log_decay, method=GLA_METHOD)
        o = o.transpose(1, 2).reshape(s, b, t, d)
        return o @ self.out[:, None]

    def forward(self, keys, values, queries) -> torch.Tensor:
        """Token ids (S, B, n_pairs) and (S, B, n_queries) -> logits (S, B, n_queries, n_values)."""
        x = self._embed(self.key_embed, keys) + self._embed(self.value_embed, values)
        x = torch.cat([x, self._embed(self.key_embed, queries) + self.query_marker], dim=2)
        x = x + self.mix(x)
        x = F.layer_norm(x[:, :, keys.shape[-1]:], (self.d_model,)) * self.norm_weight + self.norm_bias
        return x @ self.readout[:, None] + self.readout_bias[:, None, None]


def _seed_list(fn: str, seeds) -> list[int]:
    seeds = [seeds] if not isinstance(seeds, (list, tuple)) else list(seeds)
    if not seeds:
        raise ValueError(f"{fn}: seed must be an int or a non-empty list of ints, got []")
    for s in seeds:
        whole_number(fn, "seed", s, minimum=0)
    return [int(s) for s in seeds]


def state_floats(mixer: str, seq_len: int, *, d_state: int, d_value: int, n_heads: int) -> int:
    """Floats a mixer keeps to answer a query at position ``seq_len``: the KV cache of T (d_state + d_value)
    per head for softmax, a d_state x d_value state per head for the recurrences (any T)."""
    fn = "state_floats"
    choice(fn, "mixer", mixer, MIXERS)
    seq_len, d_state = whole_number(fn, "seq_len", seq_len), whole_number(fn, "d_state", d_state)
    d_value, n_heads = whole_number(fn, "d_value", d_value), whole_number(fn, "n_heads", n_heads)
    per_head = seq_len * (d_state + d_value) if mixer == "softmax" else d_state * d_value
    return n_heads * per_head


@threads(1)  # tiny matrices: a second thread costs more than it saves, and stalls on a busy CPU
def train_mqar(mixer: str, *, d_state: int, seed, steps: int = 500, batch: int = 16, lr: float = 1e-2,
               max_pairs: int = 16, n_queries: int = 8, n_heads: int = 2):
    """Train an ``MQARModel`` on 2..``max_pairs`` pairs and ``n_queries`` queries per sequence.

    Returns the model and its training accuracy (over all query positions) per step. ``seed``
    fixes the initial weights and the training batches (two separate streams). The learning rate
    falls from ``lr`` to ``lr / 10`` along a cosine. ``seed`` may be a
    list of seeds: the models are then trained side by side, each on its own batches (the loss is
    the sum of theirs, so no gradient crosses models), and the curves come back as one list per seed.
    The number of pairs per step follows one schedule shared by every seed, so the models can run
    as one batch.
    """
    fn = "train_mqar"
    choice(fn, "mixer", mixer, MIXERS)
    seeds = _seed_list(fn, seed)
    steps, batch = whole_number(fn, "steps", steps), whole_number(fn, "batch", batch)
    max_pairs = whole_number(fn, "max_pairs", max_pairs, minimum=2)
    n_queries = whole_number(fn, "n_queries", n_queries)
    lr = positive(fn, "lr", lr)
    model = MQARModel(mixer, d_state=d_state, seeds=seed, n_heads=n_heads)
    if max_pairs > model.n_keys:
        raise ValueError(f"{fn}: max_pairs must be at most n_keys={model.n_keys}, got {max_pairs}")
    data = [_generator(fn, s, "data") for s in seeds]
    lengths = _generator(fn, 0, "lengths")  # the same schedule of pair counts for every seed
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    curves = [[] for _ in seeds]
    for step in range(steps):
        for group in opt.param_groups:  # a cosine from lr down to lr / 10, as Zoology's runs decay theirs
            group["lr"] = lr * (0.55 + 0.45 * math.cos(math.pi * step / steps))
        n = int(torch.randint(2, max_pairs + 1, (1,), generator=lengths))
        draws = [mqar_batch(batch, n, n_queries, generator=g, n_keys=model.n_keys, n_values=model.n_values)
                 for g in data]
        keys, values, queries, targets = (torch.stack(parts) for parts in zip(*draws))
        logits = model(keys, values, queries)
        loss = F.cross_entropy(logits.flatten(1, 2).transpose(1, 2), targets.flatten(1), reduction="none")
        opt.zero_grad()
        loss.mean(-1).sum().backward()  # each model's mean loss, summed: the models train independently
        opt.step()
        hits = (logits.argmax(-1) == targets).float().mean((1, 2))
        for curve, h in zip(curves, hits.tolist()):
            curve.append(h)
    return model, (curves if isinstance(seed, (list, tuple)) else curves[0])


@torch.no_grad()
def mqar_accuracy(model: MQARModel, n_pairs: int, *, seed: int, n_queries: int = 8, batch: int = 256):
    """Held-out accuracy over every query, with ``n_pairs`` pairs per sequence, on a batch drawn from ``seed``.

    The same ``seed`` gives every model the same sequences, so models are compared on the same questions.
    Returns a float for a model trained on one seed, a list (one per seed) for models trained side by side.
    """
    fn = "mqar_accuracy"
    if not isinstance(model, MQARModel):
        raise TypeError(f"{fn}: model must be an MQARModel (from train_mqar), got {type(model).__name__}")
    n_pairs = whole_number(fn, "n_pairs", n_pairs)
    n_queries, batch = whole_number(fn, "n_queries", n_queries), whole_number(fn, "batch", batch)
    if n_pairs > model.n_keys:
        raise ValueError(f"{fn}: n_pairs must be in [1, n_keys={model.n_keys}], got {n_pairs}")
    g = _generator(fn, seed, f"eval/{n_pairs}/{n_queries}")
    keys, values, queries, targets = (x.expand(len(model.seeds), *x.shape) for x in
                                      mqar_batch(batch, n_pairs, n_queries, generator=g,
                                                 n_keys=model.n_keys, n_values=model.n_values))
    hits = (model(keys, values, queries).argmax(-1) == targets).float().mean((1, 2)).tolist()
    return hits if len(hits) > 1 or model.stacked else hits[0]

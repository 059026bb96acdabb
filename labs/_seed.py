"""The book's one seed mechanism.

``LABS_SEED`` (default 0) is the book-wide seed. A chapter calls ``labs.seed()``
once, at the top, and derives every random stream it uses from the book seed
with ``labs.generator(stream)`` (torch) or ``labs.numpy_generator(stream)``
(NumPy), naming the stream (``"data"``, ``"init"``, ...). Setting one
environment variable moves every stream of every chapter to another seed.
``labs.seeds(n)`` gives the seeds of an experiment repeated over ``n`` seeds.

Library functions never touch global RNG state: they take ``seed=`` or
``generator=``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random

import numpy as np
import torch

from ._checks import whole_number

ENV = "LABS_SEED"
_last_seed: int | None = None


def _check_seed(fn: str, name: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{fn}: {name} must be an int, got {type(n).__name__} ({n!r})")
    if not 0 <= n < 2**32:
        raise ValueError(f"{fn}: {name} must be in [0, 2**32), got {n}")
    return int(n)


def book_seed() -> int:
    """The book-wide seed: ``LABS_SEED`` if set, else 0."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{ENV} must be an int in [0, 2**32), got {raw!r}") from None
    return _check_seed("book_seed", ENV, value)


def seed(n: int | None = None) -> int:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA); return the seed.

    ``n=None`` takes the book seed (``LABS_SEED``, default 0): what a chapter calls.
    """
    global _last_seed
    n = book_seed() if n is None else _check_seed("seed", "n", n)
    random.seed(n)
    np.random.seed(n)
    torch.manual_seed(n)  # also seeds every CUDA device
    _last_seed = n
    return n


def last_seed() -> int | None:
    """The seed of the latest ``seed`` call in this process, or None."""
    return _last_seed


def derive_seed(stream: str | int, base: int | None = None) -> int:
    """A seed in [0, 2**63) for the named ``stream``, derived from ``base`` (default: the book seed).

    Distinct streams give unrelated seeds, and the same (base, stream) always gives the same one.
    """
    if isinstance(stream, bool) or not isinstance(stream, (str, int, np.integer)):
        raise TypeError(f"derive_seed: stream must be a str or an int, got {type(stream).__name__} ({stream!r})")
    base = book_seed() if base is None else _check_seed("derive_seed", "base", base)
    digest = hashlib.blake2b(f"{base}/{type(stream).__name__}:{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generator(stream: str | int = "default", *, device: torch.device | str | None = None) -> torch.Generator:
    """A fresh torch generator for ``stream``, seeded from the book seed (on ``device``, default CPU)."""
    gen = torch.Generator(device=device if device is not None else "cpu")
    return gen.manual_seed(derive_seed(stream))


def numpy_generator(stream: str | int = "default") -> np.random.Generator:
    """A fresh NumPy generator for ``stream``, seeded from the book seed."""
    return np.random.default_rng(derive_seed(stream))


def seeds(n: int, stream: str = "seeds") -> list[int]:
    """``n`` distinct seeds for an experiment repeated over seeds, derived from the book seed.

    Each is a 31-bit int, fit for ``torch.manual_seed``, ``np.random.default_rng`` and ``seed=`` arguments.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"seeds: n must be a positive int, got {n!r}")
    return [derive_seed(f"{stream}/{i}") % 2**31 for i in range(int(n))]


def seed_generator(fn: str, seed: int, stream: str) -> torch.Generator:
    """A generator for one ``stream`` of draws (``"init"``, ``"data"``, ...) of a library function's ``seed``.

    ``fn`` names the function in the error for a bad ``seed``. Library functions use this
    where a chapter would use ``labs.generator(stream)``: their draws depend on ``seed`` alone.
    """
    seed = whole_number(fn, "seed", seed, minimum=0)
    if seed >= 2**32:
        raise ValueError(f"{fn}: seed must be an int < 2**32, got {seed}")
    return torch.Generator().manual_seed(derive_seed(stream, base=seed))


@contextlib.contextmanager
def global_rng_from(generator: torch.Generator):
    """Inside the block torch's global CPU RNG continues ``generator``'s stream; outside, it is as it was.

    ``torch.nn`` layers draw their initial weights from the global RNG; building them in
    this block makes a model's weights depend on ``generator`` alone and leaves global state alone.
    """
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise TypeError(f"global_rng_from: generator must be a CPU torch.Generator, got {generator!r}")
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(generator.get_state())
        yield

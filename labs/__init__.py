"""labs: the companion package of the executable deep-learning textbook.

One sub-package per chapter (``labs.scaling``, ...), plus the shared pieces
every chapter uses: seeding, the backend choice, derivation checks, plots,
widgets and provenance.
"""

__version__ = "0.1.0"

from ._backend import backend_info, device  # noqa: E402
from ._seed import book_seed, generator, numpy_generator, seed, seeds  # noqa: E402
from ._threads import threads  # noqa: E402
from .book import glue, progress  # noqa: E402
from .provenance import provenance  # noqa: E402

__all__ = [
    "backend_info", "book_seed", "device", "generator", "glue", "numpy_generator", "progress", "provenance",
    "seed", "seeds", "threads", "__version__",
]

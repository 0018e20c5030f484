"""Hand the C allocator's free memory back to the system, where that allocator is glibc's.

A long-running Python process whose threads come and go in turn (``asyncio.to_thread``: the
supervisor's polls, sweeps and HTTP calls) leaves freed memory in glibc's per-thread arenas,
which glibc keeps for reuse instead of returning it, so RSS can climb while the Python heap
stays flat: ``ownercare run``'s own process grew 17.5 MiB/h in a 60-minute soak while
tracemalloc saw its Python heap change by 13 kB over 15 minutes (docs/benchmarks.md).
``malloc_trim(0)`` returns every arena's free pages (glibc >= 2.8); elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None
    return trim


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system; False where it cannot (not glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True

"""numba's compiled loops run at torch's thread count, and leave that count as it was."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numba
import torch


@contextlib.contextmanager
def numba_threads_as_torch() -> Iterator[None]:
    """numba's threads follow torch's setting (`--threads`), within the pool numba started.

    numba's OpenMP layer sets OpenMP's thread count to its pool's size when it starts the
    pool, which is also torch's (one OpenMP runtime): without the restore, a `--threads 1`
    command would run torch at every core after its first compiled call (a test).
    """
    threads = torch.get_num_threads()
    try:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

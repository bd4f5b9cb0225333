"""When the compiled (numba) loops run, and at how many threads.

The loops give the same bits as the tensor code they replace, so choosing between them is
only a question of time: numba's import and its first call cost a fresh process about
0.6 s (its runtime is compiled by LLVM at start), which a pass repays only when its maps
are large enough. `worth_compiling` is that cost model; the measured constants are in the
README ("Compiled loops for the per-layer work").
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

# numba's import and first call in a fresh process (0.25 s + 0.4 s, measured alone).
NUMBA_START_SECONDS = 0.6
# Time the compiled word conversion and head predictions save per token-level attention
# cell of a pass (padded rows x tokens² x heads x layers): about 1.15 s over the 286M cells
# of 256 Wikipedia segments (from a torch profile of 64 of them), so about 4 ns.
SECONDS_SAVED_PER_CELL = 4e-9


_held_back = False


def worth_compiling(cells: int) -> bool:
    """Whether a pass over `cells` attention cells should take the compiled loops: always once
    numba is loaded (a long command, a notebook), else when the pass repays numba's start
    and numba is not held back."""
    if "numba" in sys.modules:
        return True
    return not _held_back and cells * SECONDS_SAVED_PER_CELL > NUMBA_START_SECONDS


@contextlib.contextmanager
def numba_held_back() -> Iterator[None]:
    """Within: passes take the tensor code until something else loads numba.

    numba and its compiled runtime hold about 0.12 GiB of RSS for the rest of the process.
    `reproduce` holds it back so that it does not sit under the probe stage's peak: its only
    other user, the distance_glove probe, trains last.
    """
    global _held_back
    outer, _held_back = _held_back, True
    try:
        yield
    finally:
        _held_back = outer


def loop_input(tensor: torch.Tensor) -> np.ndarray:
    """A CPU tensor as the C-contiguous array a compiled loop reads (a view when it already is)."""
    return tensor.detach().contiguous().numpy()


@contextlib.contextmanager
def numba_threads_as_torch() -> Iterator[None]:
    """numba's threads follow torch's setting (`--threads`), within the pool numba started.

    numba's OpenMP layer sets OpenMP's thread count to its pool's size when it starts the
    pool, which is also torch's (one OpenMP runtime): without the restore, a `--threads 1`
    command would run torch at every core after its first compiled call (a test).
    """
    import numba
    import torch

    threads = torch.get_num_threads()
    try:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

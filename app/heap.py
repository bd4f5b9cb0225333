"""Keeping the process's resident memory flat: give freed heap back to the OS when it piles up.

`keep_freed_memory` (attention.py) tells glibc to keep freed blocks for reuse and never trim
the heap, which saves page faults on every layer. The price: what an analysis frees stays
resident, and when small long-lived allocations (rows waiting for the database) land among
the freed map-sized blocks, the heap fragments and grows batch after batch although the live
data do not (`analyze coref` on LitBank: 236 MiB in use, 766 MiB free and resident after 7
batches). In one process (`reproduce`) every later stage would also inherit the largest heap
of the stages before it. The streamed rows themselves now wait off the heap (RowBuffer's
arenas, app/analysis/base.py), which halved the page faults of `analyze surface syntax`; the
guard stays for whatever else fragments.

`HeapGuard.check()` runs after every batch and is cheap (one read of /proc/self/statm): only
when the resident size has grown more than `slack` bytes since the pass's first batch (or the
last trim) does it call `malloc_trim(0)`, which returns the free pages to the OS (about 70 ms
for 250 MiB). A pass whose memory is steady never trims. `release_memory()` (garbage
collection, then the same trim) is for boundaries: the end of a pass, a stage of `reproduce`.
Both are no-ops where glibc is absent.

`short_lived_process()` sets the garbage collector for a process that does one job and exits
(the CLI, a `reproduce` stage, the MLflow helper): see its docstring.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import gc
import os
import sys
from collections.abc import Iterator

# Growth of the resident size over a pass's first batch that triggers a trim. A batch of
# MiniLM at 16 x 128 pieces holds ~75 MiB of attention maps and frees ~300 MiB of
# temporaries, which the heap rightly keeps; fragmentation adds ~100 MiB per batch on top.
HEAP_SLACK = 256 << 20
# Growth over a block of work (a probe, a collated set) above which `released_if_grown` trims:
# EWT train's probes grow the process by hundreds of MiB, the test suite's tiny ones by a few.
BLOCK_SLACK = 64 << 20

# A full (oldest-generation) collection after this many young-generation ones (CPython: 10).
FULL_COLLECTION_EVERY = 100

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only (musl has no malloc_trim)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def resident_bytes() -> int | None:
    """This process's resident set size (Linux; else None)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def trim_heap() -> bool:
    """Return the heap's free pages to the OS (glibc's malloc_trim); False where unavailable."""
    if _LIBC is None:
        return False
    _LIBC.malloc_trim(0)
    return True


def release_memory() -> None:
    """Collect garbage, then trim the heap: for the end of a pass or of a stage."""
    gc.collect()
    trim_heap()


def short_lived_process() -> None:
    """Garbage-collector settings for a process that does one job and exits.

    Importing torch, transformers, SQLAlchemy and DuckDB leaves about 440k objects tracked by
    the collector. With CPython's thresholds the imports alone set off eight full collections,
    each walking everything imported so far (1.1 s of `analyze`'s start-up, on one core while
    the other waits), and the interpreter's finalization walks it all again at exit (1.3 s).
    Full collections become ten times rarer (young ones are unchanged, so short-lived cycles
    are freed as before), and at exit everything still alive is frozen (`gc.freeze`) so that
    finalization skips it: the process is ending, the OS takes its memory back. Objects are
    still freed by reference counting at exit; only cycles among them are left to the OS.
    Not for a notebook: a long-lived process keeps CPython's defaults.
    """
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
    atexit.register(gc.freeze)  # registered early, so it runs after the others (LIFO)


@contextlib.contextmanager
def released_if_grown(slack: int = BLOCK_SLACK) -> Iterator[None]:
    """`release_memory()` after the block, if the resident size grew more than `slack` over it.

    For work that frees what it built (a probe's data, the rows a set was collated from): a
    trim walks the whole heap, tenths of a second in a large process, which small work (the
    test suite's tiny probes, a probe already done) would pay for nothing.
    """
    before = resident_bytes()
    try:
        yield
    finally:
        after = resident_bytes()
        if before is not None and after is not None and after - before > slack:
            release_memory()


class HeapGuard:
    """Trims the heap when the resident size grows `slack` bytes past its reference: the size
    after the first check (a pass's first batch, its working set included), raised to what a
    trim cannot give back (live data that really grew)."""

    def __init__(self, slack: int = HEAP_SLACK):
        self.slack = slack
        self.reference: int | None = None
        self.trims = 0

    def check(self) -> None:
        resident = resident_bytes()
        if resident is None:
            return
        if self.reference is None:
            self.reference = resident
        elif resident > self.reference + self.slack and trim_heap():
            self.trims += 1
            after = resident_bytes()
            if after is not None:
                self.reference = max(self.reference, after)

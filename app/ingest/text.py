"""Plain-text corpora: one segment per line; a TAB splits a line into a pair of sequences.

Text is split into words the way BERT's basic tokenizer does (runs of letters/digits, and
each punctuation character alone), independently of any model, so the same words can be
aligned to any tokenizer later.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from app.errors import CorpusFormatError
from app.ingest.datasets import numbered_lines
from app.types import CorpusData, Document, Segment, Word

WORD_PATTERN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def split_words(text: str) -> list[str]:
    return WORD_PATTERN.findall(text)


def pair_segment(
    label: str, first: list[str], second: list[str] | None, text: str | None = None
) -> Segment:
    words = [Word(form) for form in first] + [Word(form, part=1) for form in second or []]
    return Segment(label=label, words=words, text=text)


def read_text_corpus(name: str, path: Path) -> CorpusData:
    """Each non-blank line is a segment; `first<TAB>second` is a paragraph pair."""
    segments = []
    digest = hashlib.sha256()
    for number, line in numbered_lines(path):
        digest.update(line.encode() + b"\n")
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) > 2:
            raise CorpusFormatError(
                str(path), number, f"at most one TAB per line (a pair), found {len(parts) - 1}"
            )
        first = split_words(parts[0])
        second = split_words(parts[1]) if len(parts) == 2 else None
        if not first or (second is not None and not second):
            raise CorpusFormatError(str(path), number, "a side of the pair has no words")
        segments.append(pair_segment(f"{path.name}:{number}", first, second, text=line))
    if not segments:
        raise CorpusFormatError(str(path), None, "no text: every line is blank")
    return CorpusData(
        name=name,
        format="text",
        source=str(path),
        sha256=digest.hexdigest(),
        documents=[Document(name=path.name, segments=segments)],
    )

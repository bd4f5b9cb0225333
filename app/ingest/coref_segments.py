"""Coreference mentions as the analysis needs them: head words, types, 128-piece segments.

Mention heads come from gold dependencies when the sentence has them, from a pluggable
silver parser otherwise, and from a surface rule as a last resort (`find_mention_heads`).
Mention types (pronoun / proper / nominal) come from the head's POS, or a lexicon and
capitalisation rule without POS. The paper truncates each document to 128 word pieces;
`segment_document` does that, or covers the document with windows, and counts every
mention and arc it loses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

from app.errors import CorpusFormatError, UnknownName
from app.ingest.conll import combined_sha256
from app.ingest.coref import (
    READERS,
    CorefDocument,
    CorefFormat,
    Parser,
    PieceCounter,
)
from app.types import CorpusData, Document, MentionType, Segment, Word

SegmentMode = Literal["truncate", "windows"]

PRONOUNS = frozenset(
    "i me my mine myself we us our ours ourselves you your yours yourself yourselves "
    "thou thee thy thine thyself ye he him his himself she her hers herself it its itself "
    "they them their theirs themselves this that these those who whom whose which".split()
)
PRONOUN_XPOS = frozenset({"PRP", "PRP$", "WP", "WP$"})
# Without a parse, a mention's head is the last word before the first of these (after the
# first word): prepositions and relativizers start post-modifiers in English noun phrases.
POSTMODIFIER_STARTS = frozenset(
    "of in on at from with without for to by about under over into onto near after before "
    "between among through during than who whom whose which that where when , ( [ : ; —".split()
)
_POSSESSIVE = frozenset({"'s", "’s", "'", "’"})
_QUOTES_DASHES_BRACKETS = frozenset(
    {'"', "“", "”", "‘", "’", "'", "``", "''", "`", "(", "[", "-", "--"}
)
_SENTENCE_END = frozenset({".", "!", "?", "...", "…"})


def _is_punct(form: str) -> bool:
    return bool(form) and not any(ch.isalnum() for ch in form)


def rule_head(forms: Sequence[str], start: int, end: int) -> int:
    """Head of words [start, end] without a parse: the last word before the first
    post-modifier (a preposition, relativizer, comma or bracket after the first word),
    skipping trailing punctuation and a possessive `'s` (also split as `'` `s`)."""
    stop = end
    for k in range(start + 1, end + 1):
        if forms[k].lower() in POSTMODIFIER_STARTS:
            stop = k - 1
            break
    k = stop
    while k > start:
        form = forms[k].lower()
        if form == "s" and forms[k - 1] in _POSSESSIVE:
            k -= 2
        elif _is_punct(form) or form in _POSSESSIVE:
            k -= 1
        else:
            break
    return max(k, start)


def _sentence_initial(words: Sequence[Word], k: int) -> bool:
    j = k - 1
    while (
        j >= 0
        and words[j].form in _QUOTES_DASHES_BRACKETS
        and words[j].sent_index == words[k].sent_index
    ):
        j -= 1
    return j < 0 or words[j].sent_index != words[k].sent_index or words[j].form in _SENTENCE_END


def mention_type(words: Sequence[Word], head: int) -> MentionType:
    """'pronoun' / 'proper' / 'nominal' from the head's POS.

    Without POS (LitBank, GAP): a pronoun when the lowercased form is in PRONOUNS; proper
    when capitalised and either not sentence-initial or, sentence-initially, seen
    capitalised elsewhere in `words` at a non-initial position; nominal otherwise.
    """
    word = words[head]
    if word.upos is not None or word.xpos is not None:
        if word.upos == "PRON" or word.xpos in PRONOUN_XPOS:
            return "pronoun"
        if word.upos == "PROPN" or word.xpos in {"NNP", "NNPS"}:
            return "proper"
        return "nominal"
    if word.form.lower() in PRONOUNS:
        return "pronoun"
    if not word.form[:1].isupper():
        return "nominal"
    if not _sentence_initial(words, head):
        return "proper"
    elsewhere = (k for k, w in enumerate(words) if w.form == word.form and k != head)
    return "proper" if any(not _sentence_initial(words, k) for k in elsewhere) else "nominal"


def _document_heads(
    doc: CorefDocument, parse: Parser | None, upto: int | None = None
) -> tuple[list[int | None], list[str | None]]:
    """Per word: its document-level head (None = root) and where it comes from (None =
    no dependencies for its sentence). Silver heads are used here only, never stored.
    Sentences starting at word `upto` or later are not parsed."""
    heads: list[int | None] = []
    sources: list[str | None] = []
    for offset, sentence in zip(doc.sentence_starts, doc.sentences):
        if any(word.deprel is not None for word in sentence):
            local, source = [word.head for word in sentence], "gold-dependencies"
        elif parse is not None and (upto is None or offset < upto):
            local, source = parse([word.form for word in sentence]), "silver-dependencies"
            if len(local) != len(sentence) or any(
                h is not None and not 0 <= h < len(sentence) for h in local
            ):
                raise ValueError(
                    f"parse() gave {local!r} for a sentence of {len(sentence)} words in {doc.name}"
                )
        else:
            local, source = [None] * len(sentence), None
        heads.extend(None if h is None else offset + h for h in local)
        sources.extend([source] * len(sentence))
    return heads, sources


def _dependency_head(
    words: Sequence[Word], heads: Sequence[int | None], start: int, end: int
) -> int | None:
    """The word of the span whose head is outside it (or the root); with several, the
    leftmost non-punctuation one (a span cut across a clause has several)."""
    outside = [k for k in range(start, end + 1) if (h := heads[k]) is None or not start <= h <= end]
    content = [k for k in outside if words[k].upos != "PUNCT" and not _is_punct(words[k].form)]
    return next(iter(content or outside), None)


def find_mention_heads(doc: CorefDocument, parse: Parser | None = None, *,
                       upto: int | None = None) -> CorefDocument:
    """A copy of `doc` whose mentions have head, head_source and mention_type set.

    head_source: "gold-dependencies" when every sentence the mention touches has gold
    heads, "silver-dependencies" when `parse` supplied them, else "last-word" (`rule_head`).
    A mention_type already set by the reader (GAP) is kept.

    `upto`: the document is truncated at this word, so mentions starting there or later are
    kept as they are (they will be dropped) and sentences starting there are not parsed.
    Each sentence is parsed on its own, so the kept mentions get the heads they would get
    with the whole document parsed; parsing all of LitBank (210k words) for the 11k that
    fit the paper's 128 pieces was 30 of its ingest's 35 s.
    """
    words = doc.words
    heads, sources = _document_heads(doc, parse, upto)
    mentions = []
    for mention in doc.mentions:
        if upto is not None and mention.start >= upto:
            mentions.append(mention)
            continue
        source = sources[mention.start]
        head = None
        if all(sources[k] is not None for k in range(mention.start, mention.end + 1)):
            head = _dependency_head(words, heads, mention.start, mention.end)
        if head is None:
            head, source = (
                rule_head([w.form for w in words], mention.start, mention.end),
                "last-word",
            )
        kind = mention.mention_type or mention_type(words, head)
        mentions.append(replace(mention, head=head, head_source=source, mention_type=kind))
    return replace(doc, mentions=mentions)


def _fit(pieces: Sequence[int], start: int, stop: int, budget: int) -> int:
    """End of the longest run of whole words from `start` whose pieces fit `budget`."""
    used = 0
    for k in range(start, stop):
        used += pieces[k]
        if used > budget:
            return k
    return stop


def _window_cuts(
    bounds: Sequence[tuple[int, int]], pieces: Sequence[int], budget: int
) -> list[int]:
    """Cut points of windows that take whole sentences while they fit; a sentence longer
    than the budget on its own is cut at word boundaries (a word over the budget alone is
    a window by itself: it cannot be split)."""
    cuts, used = [0], 0
    for start, stop in bounds:
        k = start
        while k < stop:
            cost = sum(pieces[k:stop])
            if used + cost <= budget:
                used, k = used + cost, stop
            elif used > 0:
                cuts.append(k)
                used = 0
            else:
                k = max(_fit(pieces, k, stop, budget), k + 1)
                cuts.append(k)
    if cuts[-1] != sum(stop - start for start, stop in bounds):
        cuts.append(sum(stop - start for start, stop in bounds))
    return cuts


def _cut_words(
    words: Sequence[Word], heads: Sequence[int | None], start: int, stop: int, dropped: Counter
) -> list[Word]:
    """Words [start, stop) with heads and sentence numbers re-based to the segment."""
    out = []
    for k in range(start, stop):
        head = heads[k]
        if head is not None and not start <= head < stop:
            dropped["dependency heads outside the segment"] += 1
            head = None
        elif head is not None:
            head -= start
        out.append(
            replace(words[k], head=head, sent_index=words[k].sent_index - words[start].sent_index)
        )
    return out


def segment_document(
    doc: CorefDocument,
    piece_counts: PieceCounter,
    *,
    max_tokens: int = 128,  # the paper's budget: each document truncated to 128 word pieces
    n_special: int = 2,  # [CLS] and [SEP]
    mode: SegmentMode = "truncate",
) -> tuple[list[Segment], dict[str, int]]:
    """The document as encoder inputs, with what was lost counted by reason (nonzero only).

    "truncate": one segment, the longest prefix of whole words whose pieces fit
    `max_tokens - n_special` (the paper). "windows": consecutive segments covering the
    document, cut at sentence boundaries where possible. Mentions crossing a cut, or after
    the truncation point, are dropped and counted; so are heads outside a segment.
    """
    return _segment(doc, _pieces(doc, piece_counts), max_tokens - n_special, mode)


def _pieces(doc: CorefDocument, piece_counts: PieceCounter) -> list[int]:
    """Word pieces per word of the document."""
    forms = [w.form for w in doc.words]
    pieces = piece_counts(forms)
    if len(pieces) != len(forms):
        raise ValueError(f"piece_counts gave {len(pieces)} counts for {len(forms)} words")
    return list(pieces)


def _segment(doc: CorefDocument, pieces: Sequence[int], budget: int,
             mode: SegmentMode) -> tuple[list[Segment], dict[str, int]]:
    """`segment_document` with the pieces counted and the budget net of special tokens."""
    words = doc.words
    dropped: Counter[str] = Counter()
    if mode == "truncate":
        cuts = [0, _fit(pieces, 0, len(words), budget)]
        dropped["words after the truncation point"] = len(words) - cuts[1]
        if cuts[1] == 0:
            dropped["documents with no word inside the budget"] += bool(words)
            cuts = [0]
    elif mode == "windows":
        bounds = [(s, s + len(sentence)) for s, sentence in zip(doc.sentence_starts, doc.sentences)]
        cuts = _window_cuts(bounds, pieces, budget)
        dropped["words longer than the token budget"] = sum(p > budget for p in pieces)
    else:
        raise UnknownName("segmentation mode", mode, ["truncate", "windows"])
    heads = doc.document_heads()
    segments = []
    for start, stop in zip(cuts, cuts[1:]):
        mentions = []
        for m in doc.mentions:
            if start <= m.start < stop:
                if m.end >= stop:
                    dropped["mentions crossing the segment cut"] += 1
                    continue
                head = None if m.head is None else m.head - start
                mentions.append(replace(m, start=m.start - start, end=m.end - start, head=head))
        segment_words = _cut_words(words, heads, start, stop, dropped)
        segments.append(Segment(f"{doc.name} [{start}-{stop - 1}]", segment_words, mentions))
    dropped["mentions after the truncation point"] = sum(m.start >= cuts[-1] for m in doc.mentions)
    return segments, {reason: n for reason, n in dropped.items() if n}


def read_coref_corpus(
    name: str,
    paths: Sequence[Path],
    fmt: CorefFormat,
    piece_counts: PieceCounter,
    *,
    max_tokens: int = 128,
    n_special: int = 2,
    mode: SegmentMode = "truncate",
    parse: Parser | None = None,
) -> CorpusData:
    """Read, find heads, classify and segment: one Document per source document (a
    document whose first word exceeds the budget has no segment and is counted)."""
    if fmt not in READERS:
        raise UnknownName("coreference format", fmt, list(READERS))
    documents, dropped, has_dependencies = [], Counter[str](), False
    budget = max_tokens - n_special
    for path in paths:
        read = READERS[fmt](path)
        if not read:
            raise CorpusFormatError(str(path), None, f"no documents: not a {fmt} corpus")
        for doc in read:
            has_dependencies |= any(w.deprel is not None for s in doc.sentences for w in s)
            pieces = _pieces(doc, piece_counts)
            # Truncated, the words past the cut lose their mentions: no head is sought there.
            upto = _fit(pieces, 0, len(pieces), budget) if mode == "truncate" else None
            doc = find_mention_heads(doc, parse=parse, upto=upto)
            segments, counts = _segment(doc, pieces, budget, mode)
            dropped.update(counts)
            if segments:
                documents.append(Document(doc.name, segments))
    return CorpusData(
        name=name,
        format=fmt,
        source=", ".join(str(path) for path in paths),
        sha256=combined_sha256(paths),
        documents=documents,
        dependency_scheme="ud" if has_dependencies else None,
        has_coreference=True,
        config={"max_tokens": max_tokens, "n_special": n_special, "mode": mode},
        dropped=dict(dropped),
    )

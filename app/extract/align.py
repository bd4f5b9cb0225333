"""Word <-> word-piece alignment and the unit layout of each encoder input.

A *unit* is what a row or column of a word-level attention map stands for: every special
token ([CLS], [SEP], <s>, </s>, ...) is a unit of its own, and every word is one unit made
of its word pieces. Special tokens are recognised by the tokenizer (its sequence ids and
special-token ids), never by literal strings, so BERT-, RoBERTa- and MPNet-style models all
work.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.config import OnUnaligned, Overflow
from app.errors import AlignmentError
from app.types import CLS, COMMA, NO_PUNCT, OTHER_SPECIAL, PERIOD, SEP, WORD, SegmentInput


@dataclass
class EncodedSegment:
    """One segment as the encoder sees it, with its token -> unit layout."""

    segment_id: int
    input_ids: np.ndarray  # [token]
    token_type_ids: np.ndarray  # [token]
    token_unit: np.ndarray  # [token] -> unit index
    token_punct: np.ndarray  # [token] NO_PUNCT / PERIOD / COMMA
    unit_kind: np.ndarray  # [unit] WORD / CLS / SEP / OTHER_SPECIAL
    unit_word: np.ndarray  # [unit] -> word index in the segment, -1 for special units
    n_words: int  # words kept (fewer than the segment's when truncated)

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def n_units(self) -> int:
        return len(self.unit_kind)


@dataclass
class Skipped:
    """Segments left out of a pass, by reason, with a few labels to show the user."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, label: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(label)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _normalize_piece(piece: str) -> str:
    # Byte-level BPE marks a leading space with "Ġ", SentencePiece with "▁".
    return piece.lstrip("Ġ▁")


@dataclass(frozen=True)
class TokenizerRoles:
    """Ids the aligner must recognise, read once from the tokenizer."""

    cls_ids: frozenset[int]
    sep_ids: frozenset[int]
    period_ids: frozenset[int]
    comma_ids: frozenset[int]

    @classmethod
    def from_tokenizer(cls, tokenizer) -> TokenizerRoles:
        cls_ids = {tokenizer.cls_token_id, tokenizer.bos_token_id} - {None}
        sep_ids = {tokenizer.sep_token_id, tokenizer.eos_token_id} - {None}
        vocab = tokenizer.get_vocab()
        period = {i for piece, i in vocab.items() if _normalize_piece(piece) == "."}
        comma = {i for piece, i in vocab.items() if _normalize_piece(piece) == ","}
        return cls(frozenset(cls_ids), frozenset(sep_ids), frozenset(period), frozenset(comma))


def _layout(
    tokenizer_output, row: int, n_first: int, roles: TokenizerRoles, input_ids: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token -> unit index, unit kinds and unit -> word, for one encoded row."""
    word_ids = tokenizer_output.word_ids(row)
    sequence_ids = tokenizer_output.sequence_ids(row)
    token_unit = np.empty(len(input_ids), dtype=np.int64)
    unit_kind: list[int] = []
    unit_word: list[int] = []
    previous_word = None
    for position, (word_id, sequence_id, token_id) in enumerate(
        zip(word_ids, sequence_ids, input_ids)
    ):
        if sequence_id is None:  # a special token: a unit of its own
            kind = (
                CLS
                if token_id in roles.cls_ids
                else SEP
                if token_id in roles.sep_ids
                else OTHER_SPECIAL
            )
            unit_kind.append(kind)
            unit_word.append(-1)
            previous_word = None
        else:
            word = word_id + (n_first if sequence_id == 1 else 0)
            if word != previous_word:
                unit_kind.append(WORD)
                unit_word.append(word)
                previous_word = word
        token_unit[position] = len(unit_kind) - 1
    return token_unit, np.array(unit_kind, dtype=np.int8), np.array(unit_word, dtype=np.int64)


def _split(forms: Sequence[str], parts: Sequence[int]) -> tuple[list[str], list[str] | None]:
    first = [form for form, part in zip(forms, parts) if part == 0]
    second = [form for form, part in zip(forms, parts) if part == 1]
    if second and any(part == 0 for part in parts[len(first) :]):
        raise AlignmentError("a paired segment must list its first sequence before its second")
    return first, (second or None)


# Segments per tokenizer call in `Aligner.encode`.
TOKENIZER_BATCH = 256


class Aligner:
    """Tokenizes segments into EncodedSegments, enforcing the token budget."""

    def __init__(
        self, tokenizer, *, max_tokens: int, overflow: Overflow, on_unaligned: OnUnaligned
    ):
        self.tokenizer = tokenizer
        self.roles = TokenizerRoles.from_tokenizer(tokenizer)
        self.max_tokens = max_tokens
        self.overflow = overflow
        self.on_unaligned = on_unaligned
        # Token id -> PERIOD / COMMA / NO_PUNCT: one gather per segment instead of set lookups.
        size = max([len(tokenizer), *(i + 1 for i in self.roles.period_ids | self.roles.comma_ids)])
        self.punct_of = np.full(size, NO_PUNCT, dtype=np.int8)
        self.punct_of[sorted(self.roles.comma_ids)] = COMMA
        self.punct_of[sorted(self.roles.period_ids)] = PERIOD

    def encode(self, segments: Iterable[SegmentInput], skipped: Skipped) -> list[EncodedSegment]:
        encoded, remaining = [], iter(segments)
        while chunk := list(itertools.islice(remaining, TOKENIZER_BATCH)):
            for segment, tokenized in zip(chunk, self._tokenize_many(chunk)):
                if tokenized is None:
                    skipped.add("empty", segment.label)
                    continue
                result = self._encode_tokenized(segment, *tokenized, skipped)
                if result is not None:
                    encoded.append(result)
        return encoded

    def _tokenize(self, forms: Sequence[str], parts: Sequence[int]):
        """One segment, as a batch of one row (the layout code reads rows)."""
        first, second = _split(forms, parts)
        output = self.tokenizer(
            [first], [second] if second is not None else None, is_split_into_words=True,
            add_special_tokens=True, truncation=False,
        )
        return output, len(first)

    def _tokenize_many(self, chunk: Sequence[SegmentInput]) -> list[tuple[Any, int, int] | None]:
        """(tokenizer output, its row, words of the first text) of each segment of a chunk:
        one tokenizer call for its single texts and one for its pairs (the same ids as a call
        each, half the time on UD EWT train); None for an empty segment."""
        texts: dict[bool, list[tuple[int, list[str], list[str] | None]]] = {False: [], True: []}
        for index, segment in enumerate(chunk):
            if segment.forms:
                first, second = _split(segment.forms, segment.parts)
                texts[second is not None].append((index, first, second))
        found: list[tuple[Any, int, int] | None] = [None] * len(chunk)
        for paired, group in texts.items():
            if group:
                output = self.tokenizer([first for _, first, _ in group],
                                        [second for _, _, second in group] if paired else None,
                                        is_split_into_words=True, add_special_tokens=True, truncation=False)
                for row, (index, first, _) in enumerate(group):
                    found[index] = (output, row, len(first))
        return found

    def _encode_prefix(
        self, segment: SegmentInput, n_keep: int, skipped: Skipped
    ) -> EncodedSegment | None:
        """The segment's first `n_keep` words alone, tokenized again (`_truncate`)."""
        forms, parts = list(segment.forms[:n_keep]), list(segment.parts[:n_keep])
        output, n_first = self._tokenize(forms, parts)
        return self._encode_tokenized(segment, output, 0, n_first, skipped, n_keep=n_keep)

    def _encode_tokenized(
        self, segment: SegmentInput, output, row: int, n_first: int, skipped: Skipped,
        *, n_keep: int | None = None,
    ) -> EncodedSegment | None:
        forms = segment.forms if n_keep is None else segment.forms[:n_keep]
        input_ids = output["input_ids"][row]
        if len(input_ids) > self.max_tokens:
            if self.overflow == "skip":
                skipped.add(f"longer than {self.max_tokens} tokens", segment.label)
                return None
            return self._truncate(segment, output, row, skipped)
        token_unit, unit_kind, unit_word = _layout(output, row, n_first, self.roles, input_ids)
        missing = sorted(set(range(len(forms))) - set(unit_word[unit_word >= 0].tolist()))
        if missing:
            word = forms[missing[0]]
            if self.on_unaligned == "error":
                raise AlignmentError(
                    f"segment {segment.label!r}: the tokenizer gives word {missing[0]} "
                    f"({word!r}, {[hex(ord(c)) for c in word][:4]}) no word pieces; "
                    "fix the corpus or pass --on-unaligned skip to leave such segments out"
                )
            skipped.add("unalignable word", segment.label)
            return None
        ids = np.asarray(input_ids, dtype=np.int64)
        token_type = output["token_type_ids"][row] if "token_type_ids" in output else None
        punct = self.punct_of[ids]
        return EncodedSegment(
            segment_id=segment.segment_id,
            input_ids=ids,
            token_type_ids=np.asarray(
                token_type if token_type is not None else [0] * len(ids), dtype=np.int64
            ),
            token_unit=token_unit,
            token_punct=punct,
            unit_kind=unit_kind,
            unit_word=unit_word,
            n_words=len(forms),
        )

    def _truncate(self, segment: SegmentInput, output, row: int, skipped: Skipped) -> EncodedSegment | None:
        """Keep the longest prefix of whole words that fits (the paper truncates documents)."""
        word_ids = output.word_ids(row)
        sequence_ids = output.sequence_ids(row)
        n_first = sum(1 for part in segment.parts if part == 0)
        n_special = sum(1 for s in sequence_ids if s is None)
        budget = self.max_tokens - n_special
        # Global word index of each non-special token, in order.
        words = [
            w + (n_first if s == 1 else 0) for w, s in zip(word_ids, sequence_ids) if s is not None
        ]
        if budget <= 0 or not words:
            skipped.add(f"longer than {self.max_tokens} tokens", segment.label)
            return None
        # The first word cut by the budget is dropped whole.
        n_keep = words[budget] if budget < len(words) else len(segment.forms)
        if n_keep == 0:
            skipped.add(f"longer than {self.max_tokens} tokens", segment.label)
            return None
        result = self._encode_prefix(segment, n_keep, skipped)
        if result is not None and result.n_tokens > self.max_tokens:  # pair layouts can shift
            return self._encode_prefix(segment, n_keep - 1, skipped) if n_keep > 1 else None
        return result

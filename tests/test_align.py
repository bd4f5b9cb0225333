"""Word <-> word-piece alignment: layouts, pairs, the token budget, unalignable words."""

from __future__ import annotations

import pytest

from app.errors import AlignmentError
from app.extract.align import Aligner, Skipped
from app.types import CLS, COMMA, PERIOD, SEP, WORD, SegmentInput


def aligner(tokenizer, **overrides):  # type: ignore[no-untyped-def]
    options = {"max_tokens": 128, "overflow": "skip", "on_unaligned": "error"} | overrides
    return Aligner(tokenizer, **options)


def test_split_word_becomes_one_unit(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    segment = SegmentInput(1, "s", ["The", "unbelievably", "cat", "."], [0, 0, 0, 0])
    (encoded,) = aligner(tiny_tokenizer).encode([segment], Skipped())
    assert encoded.n_words == 4
    assert list(encoded.unit_kind) == [CLS, WORD, WORD, WORD, WORD, SEP]
    assert list(encoded.unit_word) == [-1, 0, 1, 2, 3, -1]
    pieces_of_unbelievably = int((encoded.token_unit == 2).sum())
    assert pieces_of_unbelievably > 1
    assert encoded.n_tokens == 5 + pieces_of_unbelievably
    assert encoded.token_punct[-2] == PERIOD


def test_pair_layout_and_token_types(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    segment = SegmentInput(7, "pair", ["Hello", ",", "world", "Bye", "now"], [0, 0, 0, 1, 1])
    (encoded,) = aligner(tiny_tokenizer).encode([segment], Skipped())
    assert list(encoded.unit_kind) == [CLS, WORD, WORD, WORD, SEP, WORD, WORD, SEP]
    assert list(encoded.unit_word) == [-1, 0, 1, 2, -1, 3, 4, -1]
    assert list(encoded.token_type_ids) == [0, 0, 0, 0, 0, 1, 1, 1]
    assert COMMA in encoded.token_punct


def test_unalignable_word_is_a_clear_error_or_a_counted_skip(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    bad = SegmentInput(
        3, "doc.txt:9", ["a", "\u200b", "b"], [0, 0, 0]
    )  # zero-width space: no pieces
    with pytest.raises(AlignmentError, match=r"doc\.txt:9.*word 1.*--on-unaligned skip"):
        aligner(tiny_tokenizer).encode([bad], Skipped())
    skipped = Skipped()
    good = SegmentInput(4, "ok", ["fine"], [0])
    encoded = aligner(tiny_tokenizer, on_unaligned="skip").encode([bad, good], skipped)
    assert [e.segment_id for e in encoded] == [4]
    assert skipped.counts == {"unalignable word": 1}
    assert skipped.examples["unalignable word"] == ["doc.txt:9"]


def test_over_long_segments_are_skipped_and_counted_or_truncated(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    words = ["word"] * 20
    long = SegmentInput(5, "long", words, [0] * 20)
    skipped = Skipped()
    assert aligner(tiny_tokenizer, max_tokens=10).encode([long], skipped) == []
    assert skipped.counts == {"longer than 10 tokens": 1}

    (truncated,) = aligner(tiny_tokenizer, max_tokens=10, overflow="truncate").encode(
        [long], Skipped()
    )
    assert truncated.n_tokens == 10
    assert truncated.n_words == 8  # [CLS] + 8 words + [SEP]
    # A split word that would be cut is dropped whole.
    split = SegmentInput(6, "split", ["a", "a", "unbelievably", "b"], [0] * 4)
    (cut,) = aligner(tiny_tokenizer, max_tokens=5, overflow="truncate").encode([split], Skipped())
    assert cut.n_words == 2 and cut.n_tokens == 4


def test_a_chunk_is_encoded_as_each_segment_alone(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    """`encode` tokenizes a chunk's single texts in one call and its pairs in another: every
    segment must come out as it does on its own, in the input's order, with its skips."""
    segments = [
        SegmentInput(1, "one", ["The", "unbelievably", "cat", "."], [0, 0, 0, 0]),
        SegmentInput(2, "pair", ["Hello", ",", "world", "Bye", "now"], [0, 0, 0, 1, 1]),
        SegmentInput(3, "empty", [], []),
        SegmentInput(4, "long", ["word"] * 20, [0] * 20),
        SegmentInput(5, "two", ["fine", ",", "thanks"], [0, 0, 0]),
        SegmentInput(6, "long pair", ["a"] * 6 + ["b"] * 6, [0] * 6 + [1] * 6),
    ]
    for overflow in ("skip", "truncate"):
        together, skipped_together = Skipped(), Skipped()
        batch = aligner(tiny_tokenizer, max_tokens=10, overflow=overflow).encode(segments, skipped_together)
        alone = [encoded for segment in segments
                 for encoded in aligner(tiny_tokenizer, max_tokens=10, overflow=overflow).encode([segment], together)]
        assert [e.segment_id for e in batch] == [e.segment_id for e in alone]
        assert [e.segment_id for e in batch] == ([1, 2, 5] if overflow == "skip" else [1, 2, 4, 5, 6])
        for mine, theirs in zip(batch, alone):
            for field in ("input_ids", "token_type_ids", "token_unit", "token_punct", "unit_kind", "unit_word"):
                assert getattr(mine, field).tolist() == getattr(theirs, field).tolist(), field
            assert mine.n_words == theirs.n_words
        assert skipped_together.counts == together.counts
        assert together.counts["empty"] == 1

"""Heads as parsers: hand-built maps with hand-computed accuracies, both directions, in SQL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from app import pipeline
from app.analysis.base import AttentionBatch
from app.analysis.syntax import HeadPredictions, per_word_rows, score_arcs, score_offsets
from app.config import ExtractConfig
from app.types import CLS, OTHER_SPECIAL, SEP, WORD
from tests.conftest import store_hand_run

FIXTURES = Path(__file__).parent / "fixtures"

# Units: s1 = [CLS] the cat sat [SEP]; s2 = [CLS] a dog barked loudly [SEP].
# Head 0 mostly points dependents at their heads; head 1 mostly at the previous word, with
# large [CLS] / self weights that must be ignored and two ties (leftmost wins).
S1_HEAD0 = [
    [1.0, 0.0, 0.0, 0.0, 0.0],
    [0.1, 0.0, 0.7, 0.1, 0.1],  # the -> cat
    [0.1, 0.2, 0.0, 0.6, 0.1],  # cat -> sat
    [0.1, 0.1, 0.5, 0.0, 0.3],  # sat -> cat
    [0.0, 0.0, 0.0, 0.0, 1.0],
]
S1_HEAD1 = [
    [1.0, 0.0, 0.0, 0.0, 0.0],
    [0.5, 0.0, 0.2, 0.2, 0.1],  # the -> cat (tie with sat: leftmost)
    [0.2, 0.7, 0.0, 0.05, 0.05],  # cat -> the
    [0.0, 0.1, 0.3, 0.6, 0.0],  # sat -> cat (its 0.6 on itself is excluded)
    [0.0, 0.0, 0.0, 0.0, 1.0],
]
S2_HEAD0 = [
    [1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.1, 0.0, 0.3, 0.5, 0.0, 0.1],  # a -> barked
    [0.1, 0.1, 0.0, 0.7, 0.0, 0.1],  # dog -> barked
    [0.1, 0.2, 0.4, 0.0, 0.2, 0.1],  # barked -> dog
    [0.1, 0.0, 0.1, 0.6, 0.0, 0.2],  # loudly -> barked
    [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
]
S2_HEAD1 = [
    [1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.6, 0.0, 0.1, 0.1, 0.1, 0.1],  # a -> dog (three-way tie: leftmost)
    [0.1, 0.8, 0.0, 0.05, 0.0, 0.05],  # dog -> a
    [0.1, 0.1, 0.7, 0.0, 0.0, 0.1],  # barked -> dog
    [0.1, 0.0, 0.1, 0.7, 0.0, 0.1],  # loudly -> barked
    [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
]
# By hand, per relation: (correct, total) for head 0 and head 1 in each direction.
#   d2h:     the->cat? dep's argmax is its head.   h2d: head's argmax is the dependent.
#   h2d_col: column argmax over other words (attended_by): the word attending most to dep.
# Column argmaxes: head 0: the<-cat, cat<-the, a<-barked, dog<-barked, loudly<-barked;
#                  head 1: the<-cat, cat<-sat, a<-dog, dog<-barked, loudly<-a.
EXPECTED = {
    ("det", "d2h"): [(1, 2), (2, 2)],
    ("det", "h2d"): [(0, 2), (2, 2)],
    ("det", "h2d_col"): [(1, 2), (2, 2)],
    ("nsubj", "d2h"): [(2, 2), (0, 2)],
    ("nsubj", "h2d"): [(2, 2), (2, 2)],
    ("nsubj", "h2d_col"): [(1, 2), (2, 2)],
    ("advmod", "d2h"): [(1, 1), (1, 1)],
    ("advmod", "h2d"): [(0, 1), (0, 1)],
    ("advmod", "h2d_col"): [(1, 1), (0, 1)],
}


def hand_batch(segment_ids: list[int]) -> tuple[AttentionBatch, torch.Tensor]:
    kinds = torch.tensor(
        [[CLS, WORD, WORD, WORD, SEP, -1], [CLS, WORD, WORD, WORD, WORD, SEP]], dtype=torch.int8
    )
    words = torch.tensor([[-1, 0, 1, 2, -1, -1], [-1, 0, 1, 2, 3, -1]])
    maps = torch.zeros(2, 2, 6, 6)
    maps[0, 0, :5, :5] = torch.tensor(S1_HEAD0)
    maps[0, 1, :5, :5] = torch.tensor(S1_HEAD1)
    maps[1, 0] = torch.tensor(S2_HEAD0)
    maps[1, 1] = torch.tensor(S2_HEAD1)
    batch = AttentionBatch(
        segment_ids=np.array(segment_ids),
        input_ids=torch.zeros(2, 6, dtype=torch.long),
        token_valid=kinds >= 0,
        token_kind=kinds,
        token_punct=torch.zeros(2, 6, dtype=torch.int8),
        token_unit=torch.zeros(2, 6, dtype=torch.long),
        unit_kind=kinds,
        unit_word=words,
        n_words=np.array([3, 4]),
    )
    return batch, maps


def random_layout(generator: torch.Generator, size: int, n_units: int) -> AttentionBatch:
    """Segments of every shape the engine makes: a pair ([CLS] A [SEP] B [SEP]), a single
    sequence, one word, no [CLS] at all, an extra special token, padding units."""
    kinds = torch.full((size, n_units), -1, dtype=torch.int8)
    words = torch.full((size, n_units), -1, dtype=torch.long)
    for row in range(size):
        length = int(torch.randint(3, n_units + 1, (1,), generator=generator))
        layout = [CLS] + [WORD] * (length - 2) + [SEP]
        shape = row % 5
        if shape == 0:  # a pair
            layout[length // 2] = SEP
        elif shape == 1:  # one word
            layout = [CLS, WORD, SEP]
        elif shape == 2:  # no [CLS]
            layout[0] = WORD
        elif shape == 3:  # another special token
            layout[1] = OTHER_SPECIAL
        kinds[row, : len(layout)] = torch.tensor(layout, dtype=torch.int8)
        is_word = kinds[row] == WORD
        words[row, is_word] = torch.arange(int(is_word.sum()))
    return AttentionBatch(
        segment_ids=np.arange(size), input_ids=torch.zeros(size, 1, dtype=torch.long),
        token_valid=torch.ones(size, 1, dtype=torch.bool), token_kind=torch.zeros(size, 1, dtype=torch.int8),
        token_punct=torch.zeros(size, 1, dtype=torch.int8), token_unit=torch.zeros(size, 1, dtype=torch.long),
        unit_kind=kinds, unit_word=words, n_words=(kinds == WORD).sum(1).numpy(),
    )


@pytest.mark.parametrize("tied", [False, True])
def test_the_compiled_predictions_are_the_tensor_codes_bits(tied: bool) -> None:
    generator = torch.Generator().manual_seed(7)
    batch = random_layout(generator, size=10, n_units=14)
    maps = torch.rand(10, 3, 14, 14, generator=generator)
    if tied:  # coarse weights: many ties, which both must break to the leftmost word
        maps = (maps * 3).round()
    maps = maps / maps.sum(-1, keepdim=True)
    rows, units = torch.nonzero(batch.unit_kind == WORD, as_tuple=True)
    fused = per_word_rows(maps, batch, rows, units, fused=True)
    tensors = per_word_rows(maps, batch, rows, units, fused=False)
    assert fused.keys() == tensors.keys()
    for key, expected in tensors.items():
        assert fused[key].dtype == expected.dtype, key
        np.testing.assert_array_equal(fused[key], expected, err_msg=key)
    assert (fused["predicted_index"] == -1).any() and (fused["cls_weight"] == 0).any()  # the edge rows ran


def test_the_compiled_predictions_refuse_what_they_would_read_past() -> None:
    batch, maps = hand_batch([1, 2])
    rows, units = torch.nonzero(batch.unit_kind == WORD, as_tuple=True)
    with pytest.raises(ValueError, match="do not fit"):
        per_word_rows(maps[:, :, :5], batch, rows, units, fused=True)
    with pytest.raises(ValueError, match="do not fit"):
        per_word_rows(maps.double(), batch, rows, units, fused=True)


@pytest.fixture
def hand_run(settings, tiny_bert: Path) -> int:  # type: ignore[no-untyped-def]
    """The two-sentence corpus with the hand-built maps stored as a finished syntax run."""
    path = str(FIXTURES / "two_sentences.conllu")
    pipeline.ingest_corpus(settings, "two", fmt="conllu", path=path)

    def build(segment_ids: list[int]):  # type: ignore[no-untyped-def]
        return HeadPredictions(n_layers=1, n_heads=2), *hand_batch(segment_ids)

    return store_hand_run(settings, tiny_bert, "two", "syntax", build)


def test_per_relation_accuracy_in_sql_matches_hand_computation(settings, hand_run: int) -> None:  # type: ignore[no-untyped-def]
    scores = pipeline.run_query(
        settings,
        None,
        sql="select * from arc_scores where run_id = :r and annotation = 'gold'",
        params={"r": hand_run},
    )
    got = {
        (row.label, row.direction, row.head): (row.correct, row.n) for row in scores.itertuples()
    }
    for (relation, direction), per_head in EXPECTED.items():
        for head, expected in enumerate(per_head):
            assert got[(relation, direction, head)] == expected, (relation, direction, head)


def test_table1_picks_best_head_and_offset_baseline(settings, hand_run: int) -> None:  # type: ignore[no-untyped-def]
    table = pipeline.run_query(settings, "table1_relations", params={"min_arcs": 1}).set_index(
        "relation"
    )
    # det: head 1-2 is right on both arcs in every direction; ties go to d2h.
    assert table.loc["det", ["head", "direction", "accuracy"]].tolist() == ["1-2", "d2h", 100.0]
    assert table.loc["nsubj", ["head", "direction", "accuracy"]].tolist() == ["1-1", "d2h", 100.0]
    # all (5 non-root arcs): head 0 d2h gets 4 of 5; head 1 h2d also 4 of 5; the first wins.
    assert table.loc["all", ["arcs", "head", "direction", "accuracy"]].tolist() == [
        5,
        "1-1",
        "d2h",
        80.0,
    ]
    # Offsets: det and nsubj heads sit at +1; advmod's at -1; 'all' is 4 of 5 at +1.
    assert table.loc["det", ["baseline", "baseline_offset"]].tolist() == [100.0, 1]
    assert table.loc["advmod", ["baseline", "baseline_offset"]].tolist() == [100.0, -1]
    assert table.loc["all", ["baseline", "baseline_offset"]].tolist() == [80.0, 1]
    # Wilson interval of 4/5 at 95%: (0.3755, 0.9638).
    assert table.loc["all", "ci_low"] == pytest.approx(37.55, abs=0.01)
    assert table.loc["all", "ci_high"] == pytest.approx(96.38, abs=0.01)
    # UD has no pobj; the table says so instead of inventing numbers.
    assert pd.isna(table.loc["pobj", "accuracy"]) and "UD has no pobj" in table.loc["pobj", "note"]
    assert table.loc["det", "paper_head"] == "8-11"


def test_special_tokens_self_and_ties(settings, hand_run: int) -> None:  # type: ignore[no-untyped-def]
    rows = pipeline.run_query(
        settings,
        None,
        sql="select word_index, head, predicted_index, cls_weight, sep_weight from head_predictions "
        "join segments on segments.id = head_predictions.segment_id where run_id = :r and seg_index = 0 order by head, word_index",
        params={"r": hand_run},
    )
    head1 = rows[rows["head"] == 1].set_index("word_index")
    assert head1.loc[0, "predicted_index"] == 1  # 'the': tie between cat and sat -> cat
    assert head1.loc[0, "cls_weight"] == pytest.approx(0.5) and head1.loc[
        0, "sep_weight"
    ] == pytest.approx(0.1)
    assert head1.loc[2, "predicted_index"] == 1  # 'sat': 0.6 on itself is not a candidate


def test_offset_reference_matches_hand_computation() -> None:
    arcs = [(1, 0, 1, "det"), (1, 1, 2, "nsubj"), (1, 2, None, "root"), (2, 3, 2, "advmod")]
    offsets = score_offsets(arcs)
    assert offsets[("det", 1)] == (1, 1) and offsets[("det", -1)] == (0, 1)
    assert offsets[("advmod", -1)] == (1, 1)
    assert ("root", 1) not in offsets


def test_sql_equals_python_reference_on_a_random_model(settings, tiny_bert: Path) -> None:  # type: ignore[no-untyped-def]
    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(settings, "toy", fmt="conllu", path=str(FIXTURES / "toy.conllu"))
    (summary,) = pipeline.analyze(
        settings, ["syntax"], model="tiny", corpus="toy", config=ExtractConfig()
    )
    predictions = pipeline.run_query(
        settings,
        None,
        sql="select * from head_predictions where run_id = :r",
        params={"r": summary.run_id},
    )
    arcs = pipeline.run_query(
        settings, None, sql="select segment_id, word_index, head_index, relation from dependencies"
    )
    lookup: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for (segment, word), group in predictions.groupby(["segment_id", "word_index"]):
        predicted = np.full((2, 4), -1)
        attended = np.full((2, 4), -1)
        for row in group.itertuples():
            predicted[row.layer, row.head] = row.predicted_index
            attended[row.layer, row.head] = row.attended_by_index
        lookup[(segment, word)] = (predicted, attended)
    arc_list = [
        (
            r.segment_id,
            r.word_index,
            None if pd.isna(r.head_index) else int(r.head_index),
            r.relation,
        )
        for r in arcs.itertuples()
    ]
    expected = score_arcs(lookup, arc_list)
    sql = pipeline.run_query(
        settings,
        None,
        sql="select * from arc_scores where run_id = :r",
        params={"r": summary.run_id},
    )
    got = {(r.label, r.direction, r.layer, r.head): (r.correct, r.n) for r in sql.itertuples()}
    assert got == expected


def test_silver_layer_sits_beside_gold_and_is_idempotent(settings) -> None:  # type: ignore[no-untyped-def]
    pipeline.ingest_corpus(
        settings, "two", fmt="conllu", path=str(FIXTURES / "two_sentences.conllu")
    )
    first = pipeline.annotate(settings, "two")
    assert first.created and first.details["arcs"] == 7
    assert not pipeline.annotate(settings, "two").created
    layers = pipeline.run_query(
        settings, None, sql="select name, kind, scheme from annotation_layers order by name"
    )
    assert layers.values.tolist() == [["gold", "gold", "ud"], ["silver", "silver", "clear"]]
    silver = pipeline.run_query(
        settings,
        None,
        sql="select word_index, head_index, relation, dependencies.upos from dependencies join annotation_layers l "
        "on l.id = layer_id join segments on segments.id = segment_id where l.name = 'silver' and seg_index = 0 order by word_index",
    )
    # spaCy parses "the cat sat" as det(the, cat), nsubj(cat, sat), root(sat).
    rows = [[None if pd.isna(value) else value for value in row] for row in silver.values.tolist()]
    assert rows == [[0, 1, "det", "DET"], [1, 2, "nsubj", "NOUN"], [2, None, "root", "VERB"]]

"""Coreference heads end to end: a hand-made map whose Table 2 is worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from app import pipeline
from app.analysis.base import AttentionBatch
from app.analysis.coref import CorefHeads
from app.analysis.coref_baselines import BASELINES, score
from app.config import ExtractConfig
from app.pipeline.contexts import load_context
from app.store.db import make_engine
from app.types import CLS, SEP, WORD
from tests.conftest import needs_shared_data, store_hand_run

STORY = Path(__file__).parent / "fixtures" / "coref" / "story.conllu"
# Words: Anna0 met1 Bob2 .3 | She4 greeted5 the6 man7 .8 | Bob9 smiled10 .11
# Mentions (entity, head): Anna (1, 0), Bob (2, 2), She (1, 4), the man (2, 7), Bob (2, 9).
# Scored (they have an antecedent): She (pronoun), the man (nominal), Bob #2 (proper).
# Units of the map: [CLS] = 0, word w = unit w + 1, [SEP] = 13.
# Head 0 attends from each mention head to a right antecedent: She->Anna, man->Bob, Bob->man.
# Head 1 attends to the nearest earlier mention head:          She->Bob,  man->She, Bob->man.
ATTENTION = {  # (head, query word) -> {key word: weight}; everything else 0
    (0, 4): {0: 0.5, 2: 0.1},
    (0, 7): {0: 0.1, 2: 0.4, 4: 0.2},
    (0, 9): {0: 0.1, 2: 0.1, 4: 0.1, 7: 0.3},
    (1, 4): {0: 0.1, 2: 0.6},
    (1, 7): {0: 0.1, 2: 0.1, 4: 0.5},
    (1, 9): {0: 0.1, 2: 0.1, 4: 0.1, 7: 0.4},
}
# By hand, per type (pronoun, nominal, proper) correct:
#   head 1-1: She->Anna right, man->Bob right, Bob->the man right: 100 / 100 / 100.
#   head 1-2: She->Bob wrong, man->She wrong, Bob->the man right:    0 / 0 / 100.
#   nearest:  She->Bob wrong, the man->She wrong, Bob->the man right: 0 / 0 / 100.
#   head_match: no candidate shares She's or man's head word -> nearest (wrong, wrong);
#               Bob->Bob right: 0 / 0 / 100.


def story_batch(segment_id: int) -> tuple[AttentionBatch, torch.Tensor]:
    kinds = torch.tensor([[CLS] + [WORD] * 12 + [SEP]], dtype=torch.int8)
    words = torch.tensor([[-1, *range(12), -1]])
    maps = torch.zeros(1, 2, 14, 14)
    for (head, query), keys in ATTENTION.items():
        for key, weight in keys.items():
            maps[0, head, query + 1, key + 1] = weight
    batch = AttentionBatch(
        segment_ids=np.array([segment_id]),
        input_ids=torch.zeros(1, 14, dtype=torch.long),
        token_valid=torch.ones(1, 14, dtype=torch.bool),
        token_kind=kinds,
        token_punct=torch.zeros(1, 14, dtype=torch.int8),
        token_unit=torch.arange(14).unsqueeze(0),
        unit_kind=kinds,
        unit_word=words,
        n_words=np.array([12]),
    )
    return batch, maps


@pytest.fixture
def story_run(settings, tiny_bert: Path) -> int:  # type: ignore[no-untyped-def]
    result = pipeline.ingest_corpus(settings, "story", fmt="corefud", path=str(STORY))
    assert result.created
    context = load_context(make_engine(settings.db_url), "mentions", 1)

    def build(segment_ids: list[int]):  # type: ignore[no-untyped-def]
        (segment_id,) = segment_ids
        assert set(context) == {segment_id}
        return CorefHeads(1, 2, context), *story_batch(segment_id)

    return store_hand_run(settings, tiny_bert, "story", "coref", build)


def test_table2_worked_by_hand(settings, story_run: int) -> None:  # type: ignore[no-untyped-def]
    table = pipeline.run_query(settings, "table2_coref").set_index("method")
    columns = ["all_types", "pronoun", "nominal", "proper", "mentions"]
    third = 100 / 3
    assert table.loc["best head", ["head", *columns]].tolist() == [
        "1-1",
        100.0,
        100.0,
        100.0,
        100.0,
        3,
    ]
    assert table.loc["nearest", columns].tolist() == pytest.approx([third, 0.0, 0.0, 100.0, 3])
    assert table.loc["head_match", columns].tolist() == pytest.approx([third, 0.0, 0.0, 100.0, 3])
    assert table.loc["best head: proper", "head"] == "1-1"  # a tie with 1-2 goes to the lower head
    assert table.loc["nearest", "paper_all"] == 27


def test_sql_baselines_equal_the_python_scores(settings, story_run: int) -> None:  # type: ignore[no-untyped-def]
    from app.pipeline.ingest import read_corpus

    data = read_corpus(settings, "story", fmt="corefud", path=str(STORY), options={})
    expected = score(BASELINES, data.segments)
    table = pipeline.run_query(settings, "table2_coref").set_index("method")
    for baseline in BASELINES:
        correct, total = expected[(baseline, "all")]
        assert table.loc[baseline, "all_types"] == pytest.approx(100 * correct / total)


def test_head_predictions_per_mention(settings, story_run: int) -> None:  # type: ignore[no-untyped-def]
    rows = pipeline.run_query(
        settings,
        None,
        sql="select m.head_word, p.head, c.head_word as chosen, p.correct from coref_predictions p "
        "join mentions m on m.id = p.mention_id join mentions c on c.id = p.predicted_mention_id "
        "order by p.head, m.head_word",
    )
    assert rows.values.tolist() == [
        [4, 0, 0, True],
        [7, 0, 2, True],
        [9, 0, 7, True],
        [4, 1, 2, False],
        [7, 1, 4, False],
        [9, 1, 7, True],
    ]


def test_coref_through_the_pipeline_on_a_tiny_model(settings, tiny_bert: Path) -> None:  # type: ignore[no-untyped-def]
    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(settings, "story", fmt="corefud", path=str(STORY))
    (summary,) = pipeline.analyze(
        settings, ["coref"], model="tiny", corpus="story", config=ExtractConfig()
    )
    config = pipeline.run_query(
        settings,
        None,
        sql="select config_json from runs where id = :r",
        params={"r": summary.run_id},
    )
    assert '"overflow": "truncate"' in config["config_json"][0]  # documents are cut, never skipped
    assert summary.summary["mentions_scored"] == 3
    table = pipeline.run_query(settings, "table2_coref")
    assert set(table["mentions"]) == {3}
    assert not pd.isna(table.set_index("method").loc["best head", "all_types"])


def test_a_corpus_without_mentions_is_refused(settings, tiny_bert: Path) -> None:  # type: ignore[no-untyped-def]
    from app.errors import AnalysisUnavailable

    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(
        settings, "toy", fmt="conllu", path=str(Path(__file__).parent / "fixtures" / "toy.conllu")
    )
    with pytest.raises(AnalysisUnavailable, match="no coreference mentions"):
        pipeline.analyze(settings, ["coref"], model="tiny", corpus="toy", config=ExtractConfig())
    runs = pipeline.run_query(settings, None, sql="select status, error from runs")
    assert runs["status"].tolist() == ["failed"] and "no coreference mentions" in runs["error"][0]


@needs_shared_data()
def test_gap_ingests_with_pronoun_mentions_and_baselines(settings) -> None:  # type: ignore[no-untyped-def]
    result = pipeline.ingest_corpus(settings, "gap-validation")
    assert result.details["documents"] == 454  # one per row (shared/data/README.md section 5)
    counts = pipeline.run_query(
        settings,
        None,
        sql="select mention_type, count(*) as n from mentions group by mention_type order by mention_type",
    )
    stored = dict(zip(counts["mention_type"], counts["n"]))
    # Three mentions per row; those past or across the 128-piece cut are dropped and counted.
    dropped = sum(
        n for reason, n in result.details["dropped"].items() if reason.startswith("mentions")
    )
    assert stored["pronoun"] + stored["proper"] + dropped == 3 * 454
    assert stored["pronoun"] > 400 and stored["proper"] > 2 * 400
    # Rows whose pronoun refers to neither name have no antecedent and are not scored.
    scored = pipeline.run_query(
        settings, None, sql="select count(distinct mention_id) as n from coref_baselines"
    )
    assert 0 < scored["n"][0] <= 187 + 205  # gold = A, gold = B

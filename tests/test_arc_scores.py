"""`arc_scores` (migration 0011: no self-join of the predictions) counts what `arc_hits`,
the per-arc definition, says: on whole segments and on truncated ones, where some arcs
lose their dependent or their head word and must not be scored."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from app import pipeline
from app.config import ExtractConfig

FIXTURES = Path(__file__).parent / "fixtures"

FROM_HITS = """
select run_id, annotation, scheme, label, paper_relation, layer, head, direction,
       count(*) filter (where hit) as correct, count(*) as n
from (
    select *, 'd2h' as direction, d2h as hit from arc_hits
    union all select *, 'h2d', h2d from arc_hits
    union all select *, 'h2d_col', h2d_col from arc_hits
) as hits
where run_id = :r
group by run_id, annotation, scheme, label, paper_relation, layer, head, direction
"""
KEYS = ["label", "layer", "head", "direction"]


def _scores(settings, sql: str, run_id: int) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    frame = pipeline.run_query(settings, None, sql=sql, params={"r": run_id})
    frame = frame[[*KEYS, "correct", "n"]].astype({"correct": int, "n": int})
    return frame.sort_values(KEYS).reset_index(drop=True)


def test_arc_scores_count_what_arc_hits_say(settings, tiny_bert: Path) -> None:  # type: ignore[no-untyped-def]
    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(settings, "toy", fmt="conllu", path=str(FIXTURES / "sentences.conllu"))
    whole = pipeline.analyze(settings, ["syntax"], model="tiny", corpus="toy", config=ExtractConfig())
    # 6 word pieces: [CLS], four pieces, [SEP]: longer sentences keep a prefix of their words.
    cut = pipeline.analyze(
        settings,
        ["syntax"],
        model="tiny",
        corpus="toy",
        config=ExtractConfig(max_tokens=6, overflow="truncate"),
    )
    for (summary,) in (whole, cut):
        expected = _scores(settings, FROM_HITS, summary.run_id)
        got = _scores(settings, "select * from arc_scores where run_id = :r", summary.run_id)
        assert len(expected) > 0
        pd.testing.assert_frame_equal(got, expected)
    # Truncation drops arcs: fewer scored than in the whole run, for the same heads.
    n_whole = _scores(settings, "select * from arc_scores where run_id = :r", whole[0].run_id)
    n_cut = _scores(settings, "select * from arc_scores where run_id = :r", cut[0].run_id)
    assert n_cut["n"].sum() < n_whole["n"].sum()

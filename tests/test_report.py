"""The HTML report: every section has its figure, figures are real PNGs, MLflow gets them."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

from mlflow.tracking import MlflowClient

from app.pipeline.report import build_report

EXPECTED_FIGURES = {
    "special_tokens.png", "entropy.png", "gradients.png", "relation_heads.png", "noop.png",
    "example_heads.png", "head_clusters.png", "coref.png", "probes.png", "compare.png",
    "special_tokens_norm.png",
}  # fmt: skip


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: dict[str, bytes] = {}
        self.headings: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        attributes = dict(attrs)
        if tag == "img":
            data = attributes["src"].split("base64,", 1)[1]
            self.images[attributes["alt"]] = base64.b64decode(data)
        self._in_h2 = tag == "h2"

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        if self._in_h2:
            self.headings.append(data)
            self._in_h2 = False


def test_report_has_every_section_and_figure(populated, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = build_report(populated, model="tiny", compare_with="tiny-random", out_dir=tmp_path, min_arcs=1)
    assert result.missing == []
    parser = _Images()
    parser.feed(result.path.read_text())
    assert set(parser.images) == EXPECTED_FIGURES
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in parser.images.values())
    assert len(parser.headings) == 10 and any("Table 1" in h for h in parser.headings)
    svgs = {name.replace(".png", ".svg") for name in EXPECTED_FIGURES}
    assert {p.name for p in result.figures} == {f"tiny-{name}" for name in EXPECTED_FIGURES | svgs}
    for name in svgs:  # the same figures as vector graphics
        assert (tmp_path / f"tiny-{name}").read_text().lstrip().startswith("<?xml")
        assert "<svg" in (tmp_path / f"tiny-{name}").read_text()
    html = result.path.read_text()
    assert "headlens query table1_relations" in html and "headlens query table2_coref" in html
    assert re.search(r"<td class=\"text\">det</td>", html)
    assert "Claims scorecard" in html and "det_beats_offset" in html and "tiny-random" in html
    # Figures are logged to the MLflow run of the analysis they show.
    client = MlflowClient(tracking_uri=populated.mlflow_uri)
    run = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.`headlens.analysis` = 'surface' and "
        "tags.`headlens.model` = 'tiny' and params.weighting = 'weight'"
    )[0]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "figures")} == {
        "figures/special_tokens.png", "figures/entropy.png", "figures/compare.png"
    }


def test_missing_analyses_are_named_with_the_command_to_run(settings, tiny_bert: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from app import pipeline

    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    result = build_report(settings, model="tiny", out_dir=tmp_path)
    assert len(result.missing) == 8
    assert any("headlens analyze surface" in reason for reason in result.missing)
    assert "No probes" in result.path.read_text()

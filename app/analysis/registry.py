"""The analyses `headlens analyze` knows, by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.analysis.base import Analysis
from app.analysis.clustering import QUERY_STRIDE, HeadClustering
from app.analysis.coref import CorefHeads
from app.analysis.examples import ExampleMaps
from app.analysis.importance import GradientImportance
from app.analysis.surface import SurfaceAnalysis
from app.analysis.syntax import HeadPredictions


@dataclass(frozen=True)
class AnalysisSpec:
    name: str
    cls: type[Analysis]
    description: str
    # Segments beyond the token budget: skipped (default) or truncated (documents).
    overflow: str = "skip"
    # Corpus data the analysis needs besides attention, loaded by the pipeline by name.
    context: str | None = None
    # Fixed choices of the analysis that change its results: part of each run's identity,
    # so a run made under another choice is never taken for this one.
    identity: tuple[tuple[str, Any], ...] = ()

    def build(self, n_layers: int, n_heads: int, context: Any = None) -> Analysis:
        if self.context is None:
            return self.cls(n_layers, n_heads)
        return self.cls(n_layers, n_heads, context)  # type: ignore[call-arg]


ANALYSES: dict[str, AnalysisSpec] = {
    spec.name: spec
    for spec in [
        AnalysisSpec(
            "surface",
            SurfaceAnalysis,
            "paper §3: attention to [CLS]/[SEP]/punctuation, previous/next token, entropy",
        ),
        AnalysisSpec(
            "syntax",
            HeadPredictions,
            "paper §4.2: each head's most-attended word per word, scored against dependencies in SQL",
        ),
        AnalysisSpec(
            "coref",
            CorefHeads,
            "paper §4.3: each head's antecedent choice per mention, scored with baselines in SQL",
            overflow="truncate",
            context="mentions",
        ),
        AnalysisSpec(
            "clustering",
            HeadClustering,
            "paper §6: Jensen-Shannon distances between heads and a 2-D MDS map",
            identity=(("query_stride", QUERY_STRIDE),),
        ),
        AnalysisSpec(
            "examples",
            ExampleMaps,
            "word-level maps of a few example sentences, kept for figures (paper Fig. 5)",
            context="example_segments",
        ),
        AnalysisSpec(
            "gradients",
            GradientImportance,
            "paper §3: |d loss / d attention| by target kind (--objective mlm needs an MLM head; contrastive: paragraph pairs)",
        ),
    ]
}

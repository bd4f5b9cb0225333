"""The analyses `headlens analyze` knows, by name."""

from __future__ import annotations

from dataclasses import dataclass

from app.analysis.base import Analysis
from app.analysis.surface import SurfaceAnalysis
from app.analysis.syntax import HeadPredictions


@dataclass(frozen=True)
class AnalysisSpec:
    name: str
    cls: type[Analysis]
    description: str
    # Segments beyond the token budget: skipped (default) or truncated (documents).
    overflow: str = "skip"


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
    ]
}

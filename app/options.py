"""Typed options of the library and CLI: one frozen dataclass per stage that has options.

Each default says why it is what it is. The CLI builds these from its flags and `Lab` passes
them on, so a notebook and a shell run the same thing with the same defaults. (Analyses take
`app.config.ExtractConfig`, which is also their run identity.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from app.config import DEFAULT_MODEL, PAPER_MAX_TOKENS

CorpusFormat = Literal["text", "conllu", "conllx", "corefud", "conll2012", "gap"]
CorpusKind = Literal["dependencies", "coreference"]


@dataclass(frozen=True)
class CorpusOptions:
    """How a corpus is built: which source, and how coreference documents are cut.

    >>> CorpusOptions(n_segments=100).n_segments
    100
    """

    # A dataset name or "wiki-segments" to build the corpus from; None: the corpus name.
    source: str | None = None
    # Read a CoNLL-U source as a treebank or as coreference documents; None: the dataset's kind.
    kind: CorpusKind | None = None
    # Coreference documents are truncated to the token budget, as in the paper; "windows"
    # covers whole documents with overlapping windows instead.
    segmentation: Literal["truncate", "windows"] = "truncate"
    # Mention heads without gold dependencies: spaCy's parse, or a surface rule (no spaCy).
    heads: Literal["silver", "rule"] = "silver"
    # The paper's 1000 Wikipedia segments (§3).
    n_segments: int = 1000
    seed: int = 0
    # The paper caps every input at 128 word pieces, special tokens included.
    max_tokens: int = PAPER_MAX_TOKENS
    # Whose tokenizer measures the budget: the default encoder's, so budgets match it.
    tokenizer: str = DEFAULT_MODEL

    @classmethod
    def of(cls, value: CorpusOptions | dict[str, Any] | None) -> CorpusOptions:
        """Options as given: a CorpusOptions, a dict of some of its fields, or None.

        >>> CorpusOptions.of({"source": "wiki-segments", "n_segments": 40}).max_tokens
        128
        """
        if isinstance(value, CorpusOptions):
            return value
        return cls(**(value or {}))


@dataclass(frozen=True)
class ProbeOptions:
    """Which splits a probing classifier (paper §5) trains, stops and is scored on, and how.

    >>> ProbeOptions().lr
    0.002
    """

    train: str = "ud-ewt-train"  # UD EWT stands in for the paper's PTB-SD train split
    dev: str = "ud-ewt-dev"  # early stopping
    test: str = "ud-ewt-test"  # the reported score
    annotation: str = "gold"  # dependency layer: gold or silver
    # Attention probes: only these 0-based layers' maps; None: all layers (Table 3).
    layers: tuple[int, ...] | None = None
    # Structural probe: hidden-state layer; None: 60% of the depth (H&M's layer 7 of 12).
    hidden_layer: int | None = None
    # The authors trained 1 epoch at batch size 1; mini-batches with early stopping here.
    # None: the probe's own default (10; the structural probe trains until dev stops
    # improving, at most 100 epochs).
    max_epochs: int | None = None
    lr: float = 2e-3  # the authors' Adam learning rate
    batch_size: int = 32  # sentences per step
    seed: int = 0
    # A GloVe text file instead of the packaged GloVe 6B 50-d vectors.
    vectors: str | None = None

    def training(self) -> dict[str, Any]:
        """The classifier's own settings (app.analysis.probes.ProbeConfig fields)."""
        settings = {"lr": self.lr, "batch_size": self.batch_size, "seed": self.seed}
        if self.max_epochs is not None:
            settings["max_epochs"] = self.max_epochs
        return settings

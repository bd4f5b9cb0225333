"""Figures from query results (pandas DataFrames), one function per figure of the paper.

Each function returns a matplotlib Figure; nothing here reads the database or tensors.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

BEHAVIOUR_COLOURS = {
    "previous token": "#d62728", "next token": "#1f77b4", "[CLS]": "#9467bd", "[SEP]": "#2ca02c",
    "punctuation": "#ff7f0e", "broad": "#8c564b", "other": "#bbbbbb", "unknown (no surface run)": "#eeeeee",
}  # fmt: skip


def _column(frame, name: str) -> np.ndarray:
    return frame[name].to_numpy(dtype=float, na_value=np.nan)


def special_tokens_by_layer(by_layer, *, norm: bool = False) -> Figure:
    """Paper Figure 2 (left): attention to [CLS], [SEP], periods/commas, per layer
    (`norm`: on norm-based maps, shares of ||alpha f(x)||)."""
    figure, axis = plt.subplots(figsize=(6, 3.6))
    layers = _column(by_layer, "layer")
    for name, label, colour in (("attn_cls", "[CLS]", "#9467bd"), ("attn_sep", "[SEP]", "#2ca02c")):
        axis.plot(layers, _column(by_layer, name), marker="o", label=label, color=colour)
    punct = _column(by_layer, "attn_period") + _column(by_layer, "attn_comma")
    axis.plot(layers, punct, marker="o", label=". or ,", color="#ff7f0e")
    axis.plot(layers, _column(by_layer, "attn_prev"), ls="--", label="previous token", color="#d62728")
    axis.plot(layers, _column(by_layer, "attn_next"), ls="--", label="next token", color="#1f77b4")
    axis.set(xlabel="layer", ylabel="avg. share of ||alpha f(x)||" if norm else "avg. attention",
             title="Where heads' output comes from, per layer (norms)" if norm else "Where heads attend, per layer",
             xticks=layers)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def gradients_by_layer(by_layer) -> Figure:
    """Paper Figure 2 (right): |d loss / d attention| by target kind, per layer."""
    figure, axis = plt.subplots(figsize=(6, 3.6))
    layers = _column(by_layer, "layer")
    for name, label in (("grad_cls", "[CLS]"), ("grad_sep", "[SEP]"), ("grad_punct", ". or ,"), ("grad_other", "other")):
        axis.plot(layers, _column(by_layer, name), marker="o", label=label)
    objective = str(by_layer["objective"].iloc[0]) if "objective" in by_layer and len(by_layer) else "mlm"
    loss = {"mlm": "MLM", "contrastive": "contrastive"}.get(objective, objective)
    axis.set(xlabel="layer", ylabel="avg. |gradient|", title=f"Gradient of the {loss} loss w.r.t. attention", xticks=layers)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def entropy_by_head(grid, by_layer) -> Figure:
    """Paper Figure 4: each head's attention entropy per layer, against uniform attention;
    and the entropy of [CLS]'s attention per layer."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.scatter(_column(grid, "layer"), _column(grid, "value"), s=14, alpha=0.7, label="heads")
    left.plot(_column(by_layer, "layer"), _column(by_layer, "uniform_entropy"), color="black", ls="--",
              label="uniform attention")
    left.set(xlabel="layer", ylabel="avg. attention entropy (nats)", title="Entropy per head")
    left.legend(fontsize=8)
    right.plot(_column(by_layer, "layer"), _column(by_layer, "cls_entropy"), marker="o", color="#9467bd")
    right.set(xlabel="layer", ylabel="entropy (nats)", title="Entropy of [CLS]'s attention")
    figure.tight_layout()
    return figure


def head_clusters(clusters) -> Figure:
    """Paper Figure 6: MDS of Jensen-Shannon distances, by behaviour and by layer."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6))
    x, y = _column(clusters, "x"), _column(clusters, "y")
    for behaviour, colour in BEHAVIOUR_COLOURS.items():
        mask = (clusters["behaviour"] == behaviour).to_numpy()
        if mask.any():
            left.scatter(x[mask], y[mask], s=30, color=colour, label=behaviour, edgecolor="black", linewidth=0.3)
    left.legend(fontsize=7, loc="best")
    left.set(title="Heads by behaviour", xticks=[], yticks=[])
    scatter = right.scatter(x, y, c=_column(clusters, "layer"), cmap="viridis", s=30)
    for label, xi, yi in zip(clusters["label"], x, y):
        right.annotate(label, (xi, yi), fontsize=5, alpha=0.7)
    figure.colorbar(scatter, ax=right, label="layer")
    right.set(title="Heads by layer", xticks=[], yticks=[])
    figure.tight_layout()
    return figure


def relation_heatmap(grid) -> Figure:
    """Best-direction accuracy of every head (columns, by layer) on every paper relation."""
    relations = sorted(grid["relation"].unique())
    labels = grid.sort_values(["layer", "head"])["label"].drop_duplicates().tolist()
    matrix = np.full((len(relations), len(labels)), np.nan)
    row_of = {relation: i for i, relation in enumerate(relations)}
    column_of = {label: j for j, label in enumerate(labels)}
    for relation, label, accuracy in zip(grid["relation"], grid["label"], _column(grid, "accuracy")):
        matrix[row_of[relation], column_of[label]] = accuracy
    figure, axis = plt.subplots(figsize=(max(8, len(labels) * 0.12), 0.35 * len(relations) + 1.5))
    image = axis.imshow(matrix, aspect="auto", cmap="magma", vmin=0, vmax=100)
    axis.set_yticks(range(len(relations)), relations)
    layers = [label.split("-")[0] for label in labels]
    starts = [j for j, layer in enumerate(layers) if j == 0 or layers[j - 1] != layer]
    axis.set_xticks(starts, [f"L{layers[j]}" for j in starts])
    figure.colorbar(image, ax=axis, label="accuracy (%)")
    axis.set_title("Accuracy of every head on every relation (best direction)")
    figure.tight_layout()
    return figure


def example_heads(maps, words, heads: list[tuple[str, str]]) -> Figure:
    """Paper Figure 5 style: attention lines of a few heads on one sentence.

    `maps` rows: layer, head (1-based), query_unit, key_unit, weight; `words`: unit, token.
    `heads`: (label "L-H", caption) to draw.
    """
    tokens = words.sort_values("unit")["token"].tolist()
    n = len(tokens)
    figure, axes = plt.subplots(1, len(heads), figsize=(3.2 * len(heads), 0.28 * n + 1.2), squeeze=False)
    for axis, (label, caption) in zip(axes[0], heads):
        layer, head = (int(part) for part in label.split("-"))
        rows = maps[(maps["layer"] == layer) & (maps["head"] == head)]
        for query, key, weight in zip(rows["query_unit"], rows["key_unit"], _column(rows, "weight")):
            if weight > 0.05:
                axis.plot([0, 1], [query, key], color="#1f77b4", alpha=float(min(1.0, weight)), lw=1.5)
        for i, token in enumerate(tokens):
            axis.text(-0.05, i, token, ha="right", va="center", fontsize=8)
            axis.text(1.05, i, token, ha="left", va="center", fontsize=8)
        axis.set(xlim=(-0.6, 1.6), ylim=(n - 0.5, -0.5), xticks=[], yticks=[], title=f"{label}: {caption}")
        for side in axis.spines.values():
            side.set_visible(False)
    figure.tight_layout()
    return figure


def grouped_bars(frame, category: str, series: list[str], title: str, ylabel: str) -> Figure:
    """Bars of several numeric columns per row (Tables 2 and 3, the no-op comparison)."""
    figure, axis = plt.subplots(figsize=(max(6, 0.9 * len(frame)), 3.8))
    positions = np.arange(len(frame))
    width = 0.8 / len(series)
    for index, name in enumerate(series):
        axis.bar(positions + index * width, _column(frame, name), width, label=name)
    axis.set_xticks(positions + width * (len(series) - 1) / 2, frame[category].astype(str), rotation=30, ha="right")
    axis.set(title=title, ylabel=ylabel)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def compare_layers(comparison, metrics: list[str], model_a: str, model_b: str) -> Figure:
    """Two models' per-layer surface statistics against relative depth."""
    figure, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        rows = comparison[comparison["metric"] == metric]
        axis.plot(_column(rows, "depth"), _column(rows, "value_a"), marker="o", label=model_a)
        axis.plot(_column(rows, "depth"), _column(rows, "value_b"), marker="s", label=model_b)
        axis.set(title=metric, xlabel="relative depth")
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    return figure

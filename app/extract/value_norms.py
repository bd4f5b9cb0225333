"""Norm-based attention (Kobayashi et al. 2020, "Attention is not only a weight").

A head's output at token i is sum_j alpha_ij f(x_j), where f(x) = (x W_V + b_V) W_O^h is
the head's value projection followed by its slice of the output projection (the output
bias is shared by all heads and left out, as in that paper). How much token j moves token
i's output is ||alpha_ij f(x_j)|| = alpha_ij ||f(x_j)||, not alpha_ij alone: a [CLS] or
[SEP] with a near-zero f can take most of the weight and change almost nothing.

`ValueCapture` records each layer's value projection output with forward hooks during the
engine's ordinary forward pass (no second pass); `head_value_norms` turns one layer's
values into ||f(x_j)|| per head and key, and `norm_maps` rescales the attention maps by
them. The maps are renormalised so each query row sums to 1 again: the surface statistics
(shares of attention, entropy) then read as shares of the output norm, and argmax-based
analyses (syntax, coreference) do not depend on the renormalisation.
"""

from __future__ import annotations

from typing import Any

import torch

from app.errors import AnalysisUnavailable

# (value projection, output projection) paths inside one encoder layer, per architecture.
_PROJECTIONS = (
    ("attention.self.value", "attention.output.dense"),  # BERT, RoBERTa, ELECTRA
    ("attention.attn.v", "attention.attn.o"),  # MPNet
)


def _layers(model: Any) -> list[Any]:
    base = getattr(model, "base_model", model)
    encoder = getattr(base, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is None:
        raise AnalysisUnavailable(
            f"norm-based attention needs a BERT- or MPNet-style encoder (encoder.layer[...]); "
            f"{type(model).__name__} has none: use --weighting weight"
        )
    return list(layers)


def projections(model: Any) -> list[tuple[torch.nn.Linear, torch.nn.Linear]]:
    """Each layer's (value projection, output projection) linear modules."""
    found = []
    for layer in _layers(model):
        for value_path, output_path in _PROJECTIONS:
            try:
                found.append((layer.get_submodule(value_path), layer.get_submodule(output_path)))
                break
            except AttributeError:
                continue
        else:
            raise AnalysisUnavailable(
                f"norm-based attention: no value/output projection found in {type(layer).__name__} "
                f"(looked for {', '.join(v for v, _ in _PROJECTIONS)}); use --weighting weight"
            )
    return found


def head_value_norms(values: torch.Tensor, output_weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """||f_h(x_j)|| for one layer.

    Args:
        values: [batch, key, head * head_dim] output of the value projection (bias included).
        output_weight: [hidden, head * head_dim] weight of the output projection (nn.Linear).
        n_heads: heads of the layer.

    Returns:
        [batch, head, key] norms of each head's transformed value vectors.
    """
    batch, keys, width = values.shape
    per_head = values.view(batch, keys, n_heads, width // n_heads)  # [batch, key, head, head_dim]
    weight = output_weight.view(output_weight.shape[0], n_heads, width // n_heads)  # [hidden, head, head_dim]
    transformed = torch.einsum("bkhd,ehd->bhke", per_head, weight.to(values.dtype))  # [batch, head, key, hidden]
    return transformed.norm(dim=-1)


def norm_maps(attention: torch.Tensor, value_norms: torch.Tensor) -> torch.Tensor:
    """||alpha_ij f(x_j)||, renormalised per query row: [batch, head, query, key]."""
    weighted = attention * value_norms.unsqueeze(2)  # [batch, head, query, key]
    return weighted / weighted.sum(-1, keepdim=True).clamp(min=1e-30)


class ValueCapture:
    """Forward hooks that keep each layer's value projection output for one forward pass.

    Use as a context manager around the engine's passes; `layer_norms(layer)` after a
    forward gives that layer's [batch, head, key] norms.
    """

    def __init__(self, model: Any, n_heads: int):
        self.n_heads = n_heads
        self._projections = projections(model)
        self._values: dict[int, torch.Tensor] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> ValueCapture:
        for layer, (value, _) in enumerate(self._projections):
            self._handles.append(value.register_forward_hook(self._hook(layer)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._values.clear()

    def _hook(self, layer: int):
        def keep(module, inputs, output) -> None:
            self._values[layer] = output.detach()

        return keep

    def layer_norms(self, layer: int) -> torch.Tensor:
        _, output = self._projections[layer]
        values = self._values.pop(layer)
        return head_value_norms(values.float(), output.weight.detach().float(), self.n_heads)

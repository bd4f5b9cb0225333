"""Probe hyper-parameter sweeps: one parent MLflow run, a nested child run per setting.

Every combination of the swept values is an ordinary probe run (a `probe_runs` row and an
MLflow run tagged `mlflow.parentRunId`, so the MLflow UI nests the children under the
parent and its compare view lines them up). Children are scored on dev only; the best dev
configuration is then evaluated on test once, and that score is what Table 3 reports
(`table3_probes` reads only runs with a test score).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.config import Settings
from app.errors import AppError, UnknownName

Say = Callable[[str], None]
# Sweepable keys -> ProbeConfig option ("layer" restricts the attention maps instead).
SWEEPABLE = {"lr": "lr", "epochs": "max_epochs", "max_epochs": "max_epochs", "patience": "patience",
             "batch_size": "batch_size", "rank": "rank", "seed": "seed", "layer": "layer"}


@dataclass
class SweepResult:
    mlflow_run_id: str | None  # None when MLflow failed (the tracker said so once)
    children: list[Any] = field(default_factory=list)  # ProbeResult per setting, in grid order
    settings_: list[dict[str, Any]] = field(default_factory=list)
    best: Any = None  # the ProbeResult selected on dev, with its test score


def parse_sweep(items: Sequence[str]) -> dict[str, list[Any]]:
    """['lr=1e-3,2e-3', 'layer=0,1'] -> {'lr': [0.001, 0.002], 'layer': [0, 1]}."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise AppError(f"--sweep {item!r}: write KEY=V1,V2 (e.g. --sweep lr=1e-3,2e-3)")
        if key not in SWEEPABLE:
            raise UnknownName("sweep key", key, list(SWEEPABLE))
        grid[key] = [_number(value) for value in values.split(",")]
    return grid


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise AppError(f"sweep value {text!r} is not a number") from None


def sweep(settings: Settings, kind: str, grid: dict[str, list[Any]], *, model: str | None, train: str,
          dev: str, test: str, options: dict[str, Any] | None = None, say: Say | None = None,
          **probe_args: Any) -> SweepResult:
    """Train `kind` once per combination of `grid`, select on dev, score the best on test."""
    from app.pipeline.probe import probe, score_held_out
    from app.tracking import Tracker

    say = say or (lambda message: None)
    keys = list(grid)
    combinations = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    tracker = Tracker(settings)
    parent = tracker.start(
        experiment=f"headlens-probes/{train}",
        run_name=f"sweep:{kind}:{model or '-'}",
        params={"kind": kind, "model": model, "train": train, "dev": dev, "test": test,
                **{f"sweep.{key}": ",".join(map(str, values)) for key, values in grid.items()},
                **{f"fixed.{key}": value for key, value in (options or {}).items()
                   if key not in {SWEEPABLE[k] for k in grid}}},
        tags={"headlens.sweep": kind, "headlens.db": settings.db_url},
    )
    result = SweepResult(parent)
    try:
        for setting in combinations:
            child_options = dict(options or {})
            layers = None
            for key, value in setting.items():
                if SWEEPABLE[key] == "layer":
                    layers = (int(value),)
                else:
                    child_options[SWEEPABLE[key]] = value
            child = probe(settings, kind, model=model, train=train, dev=dev, test=test, layers=layers,
                          options=child_options, say=say, score_test=False, mlflow_parent=parent, **probe_args)
            say(f"sweep {kind} {setting}: dev {child.metric} {child.dev_score:.1f} ({child.state})")
            result.children.append(child)
            result.settings_.append(setting)
        best_index = max(range(len(result.children)), key=lambda i: result.children[i].dev_score)
        best = result.children[best_index]
        if best.test_score is None and best.held_out is None:
            # Selected on an earlier sweep that stopped before its test evaluation: retrain it.
            setting = result.settings_[best_index]
            layers = (int(setting["layer"]),) if "layer" in setting else None
            child_options = {**(options or {}), **{SWEEPABLE[k]: v for k, v in setting.items() if k != "layer"}}
            best = probe(settings, kind, model=model, train=train, dev=dev, test=test, layers=layers,
                         options=child_options, say=say, score_test=False, mlflow_parent=parent,
                         **{**probe_args, "force": True})
        result.best = score_held_out(settings, best)
        for child in result.children:
            child.held_out = None  # release the other probes' test examples
        chosen = result.settings_[best_index]
        tracker.log_params(parent, {f"best.{key}": value for key, value in chosen.items()})
        tracker.log_metrics(parent, {f"best_dev_{best.metric}": best.dev_score, f"test_{best.metric}": best.test_score})
        tracker.set_tags(parent, {"headlens.best_probe_run_id": str(best.probe_run_id)})
    except BaseException:
        tracker.finish(parent, failed=True)
        raise
    tracker.finish(parent)
    return result

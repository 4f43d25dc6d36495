"""Data: the shipped CSVs, a local CSV/JSONL file or folder, or a Hugging Face dataset."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from finetune import ExampleError
from finetune.hub import describe_hub_error, hub_offline, looks_like_path


@dataclass
class TextSplits:
    """Train and validation texts with integer labels ``0..num_labels-1``."""

    train_texts: list[str]
    train_labels: list[int]
    val_texts: list[str]
    val_labels: list[int]
    label_names: list[str]

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV (header row), TSV, JSONL (one object per line) or JSON (a list of objects) file."""
    suffix = path.suffix.lower()
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            if suffix in (".csv", ".tsv"):
                return list(csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ","))
            if suffix == ".jsonl":
                return [json.loads(line) for line in fh if line.strip()]
            if suffix == ".json":
                text = fh.read()
                if text.lstrip().startswith("["):
                    return list(json.loads(text))
                return [json.loads(line) for line in text.splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as err:
        raise ExampleError(f"--dataset {str(path)!r}: could not read it ({err})") from None
    raise ExampleError(f"--dataset {str(path)!r}: expected a .csv, .tsv, .jsonl or .json file")


def columns_of(records: list[dict[str, Any]], where: str, text_col: str, label_col: str) -> tuple[list, list]:
    """The text and label columns of ``records``; a clear error if either is missing or empty."""
    if not records:
        raise ExampleError(f"dataset {where} has no rows")
    found = list(records[0])
    missing = [c for c in (text_col, label_col) if c not in found]
    if missing:
        raise ExampleError(
            f"dataset {where} is missing the column(s) {missing}: it has {found}, but needs {text_col!r} and"
            f" {label_col!r} (choose others with --text-column / --label-column)"
        )
    texts, labels = [], []
    for i, row in enumerate(records):
        text, label = row.get(text_col), row.get(label_col)
        if text is None or label is None or str(label).strip() == "":
            raise ExampleError(f"dataset {where}: row {i + 1} has no {text_col!r} or no {label_col!r}")
        texts.append(str(text))
        labels.append(label)
    return texts, labels


def encode_labels(train: list, val: list) -> tuple[list[int], list[int], list[str]]:
    """Map raw labels (ints, or strings such as 'pos'/'neg') to ``0..K-1``, in sorted order."""

    def key(v: Any) -> tuple[int, Any]:
        s = str(v).strip()
        try:
            return (0, float(s))
        except ValueError:
            return (1, s)

    names = sorted({str(v).strip() for v in [*train, *val]}, key=key)
    if len(names) < 2:
        raise ExampleError(f"the dataset has a single label value {names}: classification needs at least two")
    index = {n: i for i, n in enumerate(names)}
    return [index[str(v).strip()] for v in train], [index[str(v).strip()] for v in val], names


def split_records(records: list, seed: int, val_share: float = 0.2) -> tuple[list, list]:
    """A seeded shuffle, then the last ``val_share`` of rows for validation."""
    rows = list(records)
    random.Random(seed).shuffle(rows)
    n_val = max(1, round(val_share * len(rows)))
    return rows[:-n_val], rows[-n_val:]


def find_split_file(folder: Path, names: Sequence[str]) -> Optional[Path]:
    for name in names:
        for suffix in (".csv", ".jsonl", ".json", ".tsv"):
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    return None


def load_hub_dataset(name: str, seed: int) -> tuple[list, list, str]:
    """Train and validation records of a Hugging Face dataset (``datasets.load_dataset``)."""
    offline = hub_offline()
    try:
        import datasets  # imported here: only hub names need it, and it is slow to import
    except ImportError:
        raise ExampleError(f"--dataset {name!r}: not a local file or folder, and `datasets` is not installed") from None
    try:
        dsd = datasets.load_dataset(name)
    except Exception as err:
        raise ExampleError(describe_hub_error("--dataset", name, err, offline)) from None
    if "train" not in dsd:
        raise ExampleError(f"--dataset {name!r}: it has no 'train' split (splits: {list(dsd)})")
    train = dsd["train"].to_list()
    val_split = next((s for s in ("validation", "valid", "val", "test") if s in dsd), None)
    if val_split is None:
        train, val = split_records(train, seed)
    else:
        val = dsd[val_split].to_list()
    return train, val, f"{name!r}"


def load_text_splits(name: str, text_col: str, label_col: str, seed: int) -> TextSplits:
    """Load ``--dataset``: a file (split 80/20), a folder with train/validation files, or a hub name."""
    path = Path(name).expanduser()
    if path.is_file():
        train, val = split_records(read_records(path), seed)
        where = repr(str(path))
    elif path.is_dir():
        train_file = find_split_file(path, ["train"])
        val_file = find_split_file(path, ["validation", "valid", "val", "test"])
        if train_file is None:
            raise ExampleError(f"--dataset {name!r}: the folder has no train.csv / train.jsonl file")
        train = read_records(train_file)
        if val_file is None:
            train, val = split_records(train, seed)
        else:
            val = read_records(val_file)
        where = repr(str(path))
    elif looks_like_path(name):
        raise ExampleError(f"--dataset {name!r}: no such file or folder")
    else:
        train, val, where = load_hub_dataset(name, seed)
    train_texts, train_raw = columns_of(train, where, text_col, label_col)
    val_texts, val_raw = columns_of(val, where, text_col, label_col)
    train_labels, val_labels, names = encode_labels(train_raw, val_raw)
    return TextSplits(train_texts, train_labels, val_texts, val_labels, names)


def subsample(texts: list[str], labels: list[int], limit: Optional[int], seed: int) -> tuple[list, list]:
    """A seeded random subset of at most ``limit`` rows (all rows when ``limit`` is None)."""
    if limit is None or limit >= len(texts):
        return texts, labels
    keep = sorted(random.Random(seed).sample(range(len(texts)), limit))
    return [texts[i] for i in keep], [labels[i] for i in keep]


class TextDataset(torch.utils.data.Dataset):
    """(text, label) pairs; tokenisation happens per batch in :class:`Collate`."""

    def __init__(self, texts: list[str], labels: list[int]) -> None:
        self.texts, self.labels = texts, labels

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.texts[i], self.labels[i]


class Collate:
    """Tokenise a batch, padded to its longest text (fast on CPU: no padding to ``max_length``)."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, batch: list[tuple[str, int]]) -> dict[str, torch.Tensor]:
        texts, labels = zip(*batch)
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        enc["labels"] = torch.tensor(labels, dtype=torch.long)
        return dict(enc)

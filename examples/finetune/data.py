"""Data: the shipped CSVs, a local CSV/JSONL file or folder, or a Hugging Face dataset.

Every row keeps where it came from (file and line), so an error names the row a user can find in the file,
whatever the shuffle did. Labels are normalised before they are compared: numbers by value (``1``, ``1.0`` and
``"1.0"`` are one class, named ``"1"``), strings stripped; ``nan``, ``inf`` and missing labels are refused.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from finetune import ExampleError
from finetune.hub import check_hub_reachable, describe_hub_error, hub_offline, looks_like_path


@dataclass
class Record:
    """One row of a dataset and where it came from (``"train.csv line 4"``), for error messages."""

    row: dict[str, Any]
    source: str


@dataclass
class TextSplits:
    """Train and validation texts with integer labels ``0..num_labels-1`` (and optional group ids)."""

    train_texts: list[str]
    train_labels: list[int]
    val_texts: list[str]
    val_labels: list[int]
    label_names: list[str]
    val_groups: Optional[list[str]] = field(default=None)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def read_records(path: Path) -> list[Record]:
    """Rows of a CSV (header row), TSV, JSONL (one object per line) or JSON (a list of objects) file.

    Read as ``utf-8-sig``: a byte-order mark (Excel's "CSV UTF-8") is dropped, not glued to the first column.
    """
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl", ".json"):
        raise ExampleError(f"--dataset {str(path)!r}: expected a .csv, .tsv, .jsonl or .json file")
    records: list[Record] = []
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            if suffix in (".csv", ".tsv"):
                reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
                for row in reader:
                    records.append(Record(row, f"{path.name} line {reader.line_num}"))
                return records
            text = fh.read()
        if suffix == ".json" and text.lstrip().startswith("["):
            items = json.loads(text)
            for i, item in enumerate(items):
                if not isinstance(item, dict):
                    raise ExampleError(
                        f"--dataset {str(path)!r}: item {i + 1} of the JSON list is not an object"
                        f" ({type(item).__name__}): expected {{'text': ..., 'label': ...}}"
                    )
                records.append(Record(item, f"{path.name} item {i + 1}"))
            return records
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise ExampleError(f"--dataset {str(path)!r}: line {number} is not JSON ({err})") from None
            if not isinstance(item, dict):
                raise ExampleError(
                    f"--dataset {str(path)!r}: line {number} is not a JSON object ({type(item).__name__}):"
                    " expected one {'text': ..., 'label': ...} object per line"
                )
            records.append(Record(item, f"{path.name} line {number}"))
        return records
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as err:
        raise ExampleError(f"--dataset {str(path)!r}: could not read it ({err})") from None


def normalise_label(value: Any) -> Optional[str]:
    """The class name of a raw label: numbers by value (``1``, ``1.0``, ``"1.0"`` -> ``"1"``), strings stripped.

    Returns ``None`` for a missing or empty label; ``"nan"``/``"inf"`` are returned as such, to be refused.
    """
    if value is None or isinstance(value, bool):
        return None if value is None else str(value)
    text = str(value).strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return "nan" if math.isnan(number) else text.lower().lstrip("+")
    return str(int(number)) if number.is_integer() else repr(number)


def columns_of(
    records: list[Record], where: str, text_col: str, label_col: str, group_col: Optional[str] = None
) -> tuple[list[str], list[str], list[str], list[str]]:
    """Texts, normalised labels, sources and group ids of ``records``; a clear error for missing values."""
    if not records:
        raise ExampleError(f"dataset {where} has no rows")
    found = list(records[0].row)
    wanted = [text_col, label_col, *([group_col] if group_col else [])]
    missing = [c for c in wanted if c not in found]
    if missing:
        raise ExampleError(
            f"dataset {where} is missing the column(s) {missing}: it has {found}, but needs"
            f" {', '.join(map(repr, wanted))} (choose others with --text-column / --label-column"
            f"{' / --group-column' if group_col else ''})"
        )
    texts, labels, sources, groups = [], [], [], []
    for rec in records:
        text, label = rec.row.get(text_col), normalise_label(rec.row.get(label_col))
        if text is None or not str(text).strip():
            raise ExampleError(f"dataset {where}: {rec.source} has no {text_col!r}")
        if label is None:
            raise ExampleError(f"dataset {where}: {rec.source} has no {label_col!r}")
        if label in ("nan", "inf", "-inf"):
            raise ExampleError(
                f"dataset {where}: {rec.source} has the label {rec.row.get(label_col)!r}, which is not a class"
                " (a missing value?): fix or drop that row"
            )
        if group_col:
            group = rec.row.get(group_col)
            if group is None or not str(group).strip():
                raise ExampleError(f"dataset {where}: {rec.source} has no {group_col!r} (--group-column)")
            groups.append(str(group).strip())
        texts.append(str(text))
        labels.append(label)
        sources.append(rec.source)
    return texts, labels, sources, groups


def _label_key(name: str) -> tuple[int, Any]:
    try:
        return (0, float(name))
    except ValueError:
        return (1, name)


def encode_labels(
    train: list[str], val: list[str], val_sources: Sequence[str], where: str
) -> tuple[list[int], list[int], list[str]]:
    """Map normalised labels to ``0..K-1`` in sorted order (numbers by value, then strings).

    The classes are those of the training data. A validation label never seen in training is refused: the
    model could never predict it, and every metric would count it as an error nobody could fix.
    """
    names = sorted(set(train), key=_label_key)
    if len(names) < 2:
        raise ExampleError(
            f"the training data of {where} has a single label value {names}: classification needs at least two"
        )
    index = {n: i for i, n in enumerate(names)}
    unseen = sorted({v for v in val if v not in index}, key=_label_key)
    if unseen:
        first = next(s for v, s in zip(val, val_sources) if v == unseen[0])
        count = sum(v not in index for v in val)
        raise ExampleError(
            f"dataset {where}: {count} validation row(s) have label(s) {unseen} that never appear in training"
            f" (the first: {first}; training labels: {names}): the model could never predict them. Drop those"
            " rows or add training examples"
        )
    return [index[v] for v in train], [index[v] for v in val], names


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


def load_hub_dataset(name: str, seed: int) -> tuple[list[Record], list[Record], str]:
    """Train and validation records of a Hugging Face dataset (``datasets.load_dataset``)."""
    offline = hub_offline()
    try:
        import datasets  # imported here: only hub names need it, and it is slow to import
    except ImportError:
        raise ExampleError(f"--dataset {name!r}: not a local file or folder, and `datasets` is not installed") from None
    check_hub_reachable("--dataset", name, repo_type="dataset")
    try:
        dsd = datasets.load_dataset(name)
    except Exception as err:
        raise ExampleError(describe_hub_error("--dataset", name, err, offline)) from None
    if "train" not in dsd:
        raise ExampleError(f"--dataset {name!r}: it has no 'train' split (splits: {list(dsd)})")
    train = [Record(r, f"split 'train' row {i + 1}") for i, r in enumerate(dsd["train"].to_list())]
    val_split = next((s for s in ("validation", "valid", "val", "test") if s in dsd), None)
    if val_split is None:
        train, val = split_records(train, seed)
    else:
        val = [Record(r, f"split {val_split!r} row {i + 1}") for i, r in enumerate(dsd[val_split].to_list())]
    return train, val, f"{name!r}"


def load_text_splits(
    name: str, text_col: str, label_col: str, seed: int, group_col: Optional[str] = None
) -> TextSplits:
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
    train_texts, train_raw, _, _ = columns_of(train, where, text_col, label_col)
    val_texts, val_raw, val_sources, val_groups = columns_of(val, where, text_col, label_col, group_col)
    train_labels, val_labels, names = encode_labels(train_raw, val_raw, val_sources, where)
    return TextSplits(train_texts, train_labels, val_texts, val_labels, names, val_groups if group_col else None)


def subsample(texts: list, labels: list, limit: Optional[int], seed: int, *extra: list) -> tuple[list, ...]:
    """A seeded random subset of at most ``limit`` rows (all rows when ``limit`` is None), of every list."""
    if limit is None or limit >= len(texts):
        return (texts, labels, *extra)
    keep = sorted(random.Random(seed).sample(range(len(texts)), limit))
    return tuple([seq[i] for i in keep] for seq in (texts, labels, *extra))


def count_overlap(train_texts: Sequence[str], val_texts: Sequence[str]) -> int:
    """How many validation texts also appear in the training texts (compared stripped and case-folded)."""
    seen = {t.strip().casefold() for t in train_texts}
    return sum(t.strip().casefold() in seen for t in val_texts)


def undefined_metrics(val_labels: Sequence[int], label_names: Sequence[str]) -> dict[str, str]:
    """Metrics that are undefined on this validation set, each with the reason (shown as n/a, logged as NaN).

    * AUROC needs both a positive and a negative for every class: with a class absent from validation it is
      undefined for that class, and so is the macro average.
    * Macro-F1 averages every class the model was trained on: an absent class has no F1 (0/0), and dropping
      it would change what the number means, so the average is n/a too (accuracy stays defined).
    * With fewer than two validation texts no interval can be drawn: every metric is n/a.
    """
    n = len(val_labels)
    if n < 2:
        reason = f"{n} validation text(s): a bootstrap interval needs at least two"
        return {"val_acc": reason, "val_f1": reason, "val_auroc": reason}
    present = set(val_labels)
    absent = [label_names[i] for i in range(len(label_names)) if i not in present]
    if not absent:
        return {}
    if len(present) == 1:
        only = label_names[next(iter(present))]
        why = f"every validation text has the label {only!r}"
    else:
        why = f"the class(es) {absent} have no validation text"
    return {
        "val_f1": f"{why}, so their F1 and the macro average are undefined",
        "val_auroc": f"{why}, so AUROC (positives against negatives) is undefined",
    }


def group_ids(groups: Sequence[str]) -> list[int]:
    """Integer ids for ``--group-column`` values, in order of first appearance (``groups=`` of the metrics)."""
    index: dict[str, int] = {}
    return [index.setdefault(g, len(index)) for g in groups]


class TextDataset(torch.utils.data.Dataset):
    """(text, label) pairs, or (text, label, group id) triples; tokenisation happens per batch in
    :class:`Collate`."""

    def __init__(self, texts: list[str], labels: list[int], groups: Optional[list[int]] = None) -> None:
        self.texts, self.labels, self.groups = texts, labels, groups

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> tuple:
        if self.groups is None:
            return self.texts[i], self.labels[i]
        return self.texts[i], self.labels[i], self.groups[i]


class Collate:
    """Tokenise a batch, padded to its longest text (fast on CPU: no padding to ``max_length``)."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, batch: list[tuple]) -> dict[str, torch.Tensor]:
        texts, labels, *groups = zip(*batch)
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        enc["labels"] = torch.tensor(labels, dtype=torch.long)
        if groups:  # popped by the module before the model sees the batch
            enc["groups"] = torch.tensor(groups[0], dtype=torch.long)
        return dict(enc)

"""The main job's modules: ``cli`` (flags), ``data`` (files and labels), ``hub``, ``model`` (the
LightningModule), ``train`` (the Trainer) and ``report`` (table, sentence, plot).

Only ``cli`` is imported before the command line is parsed, so ``--help`` stays quick; the others import
torch, Lightning and transformers.
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
METRICS = ("val_acc", "val_f1", "val_auroc")
TRUE_WORDS = ("1", "true", "yes", "on")


class ExampleError(Exception):
    """A problem with the user's input: printed as one line on stderr, then the script exits with 2."""

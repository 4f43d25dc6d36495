"""Hugging Face hub names: offline mode, local-path detection, one-line errors."""

from __future__ import annotations

import os

from finetune import TRUE_WORDS


def hub_offline() -> bool:
    """Whether the user asked for offline mode (read at call time, so the caller's environment counts)."""
    return any(os.environ.get(var, "").lower() in TRUE_WORDS for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def looks_like_path(name: str) -> bool:
    """A name that can only be a local path (hub names are ``name`` or ``owner/name``)."""
    return (
        name.startswith((".", "/", "~", "\\"))
        or name.count("/") > 1
        or "\\" in name
        or name.lower().endswith((".csv", ".jsonl", ".json", ".tsv"))
        or (len(name) > 1 and name[1] == ":")  # C:\...
    )


def describe_hub_error(flag: str, name: str, err: BaseException, offline: bool) -> str:
    """One line that says why a hub name could not be loaded: offline mode, no network, or not found."""
    chain, e = [], err
    while e is not None and len(chain) < 20:
        chain.append(e)
        e = e.__cause__ or e.__context__
    kinds = " ".join(type(x).__name__ for x in chain)
    text = " ".join(str(x) for x in chain).lower()
    if offline or "OfflineModeIsEnabled" in kinds:
        return (
            f"{flag} {name!r} is not a local path, so it would come from the Hugging Face hub, but offline"
            " mode is on (HF_HUB_OFFLINE=1) and it is not in the local cache: connect to the network and"
            " unset HF_HUB_OFFLINE, or pass a local folder or file"
        )
    if (
        any(w in kinds for w in ("Connect", "Timeout", "LocalEntryNotFound", "gaierror"))
        or "couldn't connect" in text
        or "couldn't reach" in text
    ):
        return (
            f"{flag} {name!r} is not a local path, and the Hugging Face hub could not be reached (no network?):"
            " connect to the network, or pass a local folder or file"
        )
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"{flag} {name!r}: not a local path, and loading it from the Hugging Face hub failed: {first_line}"

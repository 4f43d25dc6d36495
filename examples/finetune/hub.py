"""Hugging Face hub names: offline mode, local-path detection, one-line errors."""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request

from finetune import TRUE_WORDS, ExampleError

REACH_TIMEOUT_S = 5.0


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


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def in_hub_cache(name: str, repo_type: str = "model") -> bool:
    """Whether ``name``'s ``config.json`` (a model) is in the local Hugging Face cache."""
    if repo_type != "model":
        return False
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # an invalid repo id, or an old huggingface_hub: treat as not cached
        return False


def hub_reachable(timeout: float = REACH_TIMEOUT_S) -> bool:
    """One request to the hub's endpoint (``HF_ENDPOINT``), honouring proxy variables; no retries.

    Any HTTP answer (even 404) means the hub is reachable; a refused connection, a DNS failure or a timeout
    means it is not.
    """
    request = urllib.request.Request(hub_endpoint() + "/api/models?limit=1", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def check_hub_reachable(flag: str, name: str, repo_type: str = "model") -> bool:
    """Fail fast for a hub name the hub cannot serve: one check, one line (instead of a minute of retries).

    Returns:
        ``True`` when the files must come from the local cache only (offline mode, or no network but cached).

    Raises:
        ExampleError: when the hub cannot be reached and ``name`` is not in the local cache.
    """
    if hub_offline():
        return True
    if hub_reachable():
        return False
    if in_hub_cache(name, repo_type):
        return True
    raise ExampleError(
        f"{flag} {name!r} is not a local path, and the Hugging Face hub ({hub_endpoint()}) could not be reached"
        " (no network?): connect to the network, pass a local folder or file, or set HF_HUB_OFFLINE=1 to use"
        " what is in the local cache"
    )

"""Fetching models and adapters from the Hugging Face Hub into the standard HF cache.

Only the files needed are fetched: config, generation config, tokenizer, and weights (safetensors when the
repo has them). Downloads resume, show progress on stderr, and honour ``HF_TOKEN``; with ``offline`` (or
``HF_HUB_OFFLINE=1``) only the cache is used. The resolved commit hash is the snapshot folder's name.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path
from typing import Literal

from ..errors import ModelError

Kind = Literal["model", "adapter"]

CONFIG_FILES = [
    "config.json",
    "generation_config.json",
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
]
SAFETENSORS = ["*.safetensors", "*.safetensors.index.json"]
PYTORCH_BIN = ["*.bin", "*.bin.index.json"]
ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"]

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_repo_id(ref: str) -> bool:
    return bool(_REPO_ID.match(ref)) and ".." not in ref


def offline_mode(offline: bool) -> bool:
    return offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def unreachable(endpoint: str | None = None, timeout: float = 3.0) -> str | None:
    """Why the Hub endpoint cannot be reached (name resolution, a refused or timed-out connection), or None.

    A quick check before downloading, so that a machine without network fails in seconds with hints instead of
    minutes of the library's retries.
    """
    from urllib.parse import urlsplit

    if endpoint is None:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    parts = urlsplit(endpoint)
    host = parts.hostname or endpoint
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.getaddrinfo(host, port)
    except (socket.gaierror, UnicodeError):
        return f"the name {host} does not resolve"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"no connection to {host}:{port} ({exc.strerror or type(exc).__name__})"


def _offline_hint(name: str, for_download: bool) -> str:
    if for_download:
        return "Unset HF_HUB_OFFLINE (and drop --offline) to download it."
    return f"Run `b2ner models download {name}` where the Hub is reachable, or pass a local directory with -m ./dir."


def _weight_patterns(repo_id: str, revision: str | None) -> list[str]:
    """Safetensors when the repo has them, else PyTorch .bin files (asks the Hub for the file list)."""
    from huggingface_hub import HfApi

    try:
        files = HfApi().list_repo_files(repo_id, revision=revision)
    except Exception:  # unreachable Hub: snapshot_download below falls back to the cache and says why
        return SAFETENSORS + PYTORCH_BIN
    return SAFETENSORS if any(f.endswith(".safetensors") for f in files) else PYTORCH_BIN


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The snapshot folder of ``repo_id`` at ``revision`` in the local cache, or None (never downloads)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def fetch(
    repo_id: str,
    *,
    revision: str | None = None,
    kind: Kind = "model",
    display: str | None = None,
    offline: bool = False,
    quiet: bool = False,
    with_code: bool = False,
    for_download: bool = False,
) -> Path:
    """The local snapshot folder of ``repo_id`` at ``revision``, downloading what is missing.

    ``with_code`` also fetches the repo's Python files, for an explicit --trust-remote-code; ``for_download`` words
    the errors for ``b2ner models download``.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    name = display or repo_id
    offline = offline_mode(offline)
    what = "Adapter" if kind == "adapter" else "Model"
    at = f" at revision {revision}" if revision else ""
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # no retry chatter: our errors say what to do
    if not offline and (problem := unreachable()) is not None:
        try:  # the cache may already hold it
            return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
        except LocalEntryNotFoundError:
            raise ModelError(
                f"{what} `{name}` ({repo_id}{at}) is not in the local cache and the Hub cannot be reached: {problem}.",
                "Pass a local model directory (-m ./dir), fill the cache where the Hub is reachable and use "
                f"--offline (cache: {cache_dir()}), or set HF_ENDPOINT to a mirror you can reach "
                "(e.g. HF_ENDPOINT=https://hf-mirror.com).",
            ) from None
    if kind == "adapter":
        patterns = ADAPTER_FILES
    else:
        patterns = CONFIG_FILES + (SAFETENSORS + PYTORCH_BIN if offline else _weight_patterns(repo_id, revision))
        if with_code:
            patterns = [*patterns, "*.py"]
    if quiet:
        disable_progress_bars()
    try:
        path = snapshot_download(repo_id, revision=revision, allow_patterns=patterns, local_files_only=offline)
    except LocalEntryNotFoundError:
        if offline:
            raise ModelError(
                f"{what} `{name}` ({repo_id}{at}) is not in the local cache and offline mode is on "
                "(--offline or HF_HUB_OFFLINE).",
                _offline_hint(name, for_download),
            ) from None
        raise ModelError(
            f"{what} `{name}` ({repo_id}{at}) could not be downloaded: the Hub is unreachable and it is not cached.",
            f"Check the network or HF_ENDPOINT, then run `b2ner models download {name}`; or pass -m ./dir.",
        ) from None
    except GatedRepoError:
        raise ModelError(
            f"{what} `{name}` ({repo_id}) is gated on the Hub.",
            "Accept its terms on the Hub, then set HF_TOKEN to a token of that account.",
        ) from None
    except RepositoryNotFoundError:
        raise ModelError(
            f"{what} `{name}`: no repo {repo_id} on the Hub (or it is private).",
            "Check the name, or set HF_TOKEN for a private repo.",
        ) from None
    except RevisionNotFoundError:
        raise ModelError(f"{what} `{name}`: revision {revision} does not exist in {repo_id}.") from None
    finally:
        if quiet:
            enable_progress_bars()
    return Path(path)

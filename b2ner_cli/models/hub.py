"""Fetching models and adapters from the Hugging Face Hub into the standard HF cache.

Only the files needed are fetched: config, generation config, tokenizer, and weights (safetensors when the
repo has them). Downloads resume, show progress on stderr, and honour ``HF_TOKEN``; with ``offline`` (or
``HF_HUB_OFFLINE=1``) only the cache is used. The resolved commit hash is the snapshot folder's name.
"""

from __future__ import annotations

import os
import re
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


def _weight_patterns(repo_id: str, revision: str | None) -> list[str]:
    """Safetensors when the repo has them, else PyTorch .bin files (asks the Hub for the file list)."""
    from huggingface_hub import HfApi

    try:
        files = HfApi().list_repo_files(repo_id, revision=revision)
    except Exception:  # unreachable Hub: snapshot_download below falls back to the cache and says why
        return SAFETENSORS + PYTORCH_BIN
    return SAFETENSORS if any(f.endswith(".safetensors") for f in files) else PYTORCH_BIN


def fetch(
    repo_id: str,
    *,
    revision: str | None = None,
    kind: Kind = "model",
    display: str | None = None,
    offline: bool = False,
    quiet: bool = False,
    with_code: bool = False,
) -> Path:
    """The local snapshot folder of ``repo_id`` at ``revision``, downloading what is missing.

    ``with_code`` also fetches the repo's Python files, for an explicit --trust-remote-code.
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
    if kind == "adapter":
        patterns = ADAPTER_FILES
    else:
        patterns = CONFIG_FILES + (SAFETENSORS + PYTORCH_BIN if offline else _weight_patterns(repo_id, revision))
        if with_code:
            patterns = [*patterns, "*.py"]
    what = "Adapter" if kind == "adapter" else "Model"
    at = f" at revision {revision}" if revision else ""
    if quiet:
        disable_progress_bars()
    try:
        path = snapshot_download(repo_id, revision=revision, allow_patterns=patterns, local_files_only=offline)
    except LocalEntryNotFoundError:
        if offline:
            raise ModelError(
                f"{what} `{name}` ({repo_id}{at}) is not in the local cache and offline mode is on "
                "(--offline or HF_HUB_OFFLINE).",
                f"Run `b2ner models download {name}` with network access.",
            ) from None
        raise ModelError(
            f"{what} `{name}` ({repo_id}{at}) could not be downloaded: the Hub is unreachable and it is not cached.",
            f"Check the network, then run `b2ner models download {name}`.",
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

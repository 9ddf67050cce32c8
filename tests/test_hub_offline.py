"""Without the Hub: fail fast with hints (no network needed: a closed port and a name that never resolves)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Home
from helpers import cli


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import huggingface_hub.constants as hf_constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    return monkeypatch


@pytest.mark.parametrize(
    ("endpoint", "problem"),
    [
        ("http://127.0.0.1:9", "no connection to 127.0.0.1:9 (Connection refused)"),
        ("https://hub.b2ner-test.invalid", "the name hub.b2ner-test.invalid does not resolve"),
    ],
)
def test_unreachable_hub_fails_fast_with_hints(
    online: pytest.MonkeyPatch, home: Home, tmp_path: Path, endpoint: str, problem: str
) -> None:
    import huggingface_hub.constants as hf_constants

    online.setattr(hf_constants, "ENDPOINT", endpoint)
    source = tmp_path / "in.txt"
    source.write_text("hello\n", encoding="utf-8")
    result = cli("extract", str(source), "-m", "some-org/some-model", "-l", "person")
    assert result.exit_code == 1
    error, hint = result.stderr.splitlines()[:2]
    assert error == (
        f"Error: Model `some-org/some-model` (some-org/some-model) is not in the local cache and the Hub cannot be "
        f"reached: {problem}."
    )
    assert hint.startswith("Hint: Pass a local model directory (-m ./dir)")
    assert "--offline" in hint and "HF_ENDPOINT" in hint and str(home.hub) in hint
    assert len(result.stderr.splitlines()) == 2  # the library's retry logs stay hidden


def test_models_download_offline_says_to_unset_offline(home: Home) -> None:
    result = cli("models", "download", "some-org/some-model")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[1] == "Hint: Unset HF_HUB_OFFLINE (and drop --offline) to download it."

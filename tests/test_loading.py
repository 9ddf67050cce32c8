"""Loading options on the tiny real model: 4-bit with bitsandbytes on CPU, --merge, and loader errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TAUGHT
from helpers import cli, read_jsonl

from b2ner_cli.errors import ModelError
from b2ner_cli.models.spec import ModelSpec

LABELS = "person,organization,location"
TEXT, _, ANSWER = TAUGHT[0]



def test_4bit_nf4_on_cpu_with_bitsandbytes(tiny) -> None:
    from bitsandbytes.nn import Linear4bit

    from b2ner_cli.models.loading import load

    loaded = load(ModelSpec(str(tiny.base), str(tiny.adapter), quantize="4bit"))
    base = loaded.model.get_base_model()
    assert isinstance(base.model.layers[0].self_attn.q_proj.base_layer, Linear4bit)
    assert base.model.layers[0].self_attn.q_proj.base_layer.weight.quant_type == "nf4"
    assert loaded.info()["quantization"] == "nf4 (double quant)"


def test_4bit_extract_gives_the_taught_answer(tiny, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text(TEXT + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = cli(
        "extract",
        str(source),
        "-l",
        LABELS,
        "-m",
        str(tiny.base),
        "--adapter",
        str(tiny.adapter),
        "--quantize",
        "4bit",
        "--keep-raw",
        "-q",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8"))["raw"] == ANSWER
    assert json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))["quantization"] == "nf4 (double quant)"


def test_merge_gives_the_same_answers(tiny, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("".join(text + "\n" for text, labels, _ in TAUGHT if ",".join(labels) == LABELS))
    common = ["extract", str(source), "-l", LABELS, "-m", str(tiny.base), "--adapter", str(tiny.adapter), "--keep-raw"]
    plain = cli(*common, "-q")
    merged_out = tmp_path / "merged.jsonl"
    merged = cli(*common, "--merge", "-q", "-o", str(merged_out))
    assert merged.exit_code == 0, merged.output
    # The same answers and entities; scores agree to float32 rounding (a merged projection sums in another order).
    merged_records = read_jsonl(merged_out)
    plain_records = [json.loads(line) for line in plain.stdout.splitlines()]

    def without_scores(records: list[dict]) -> list[dict]:
        return [{**r, "entities": [{k: v for k, v in e.items() if k != "score"} for e in r["entities"]]}
                for r in records]  # fmt: skip

    assert without_scores(merged_records) == without_scores(plain_records)
    merged_scores = [e["score"] for r in merged_records for e in r["entities"]]
    assert merged_scores == pytest.approx([e["score"] for r in plain_records for e in r["entities"]], rel=1e-4)
    assert json.loads(Path(f"{merged_out}.meta.json").read_text(encoding="utf-8"))["adapter_merged"] is True


def test_merge_is_refused_for_a_quantized_model(tiny, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text(TEXT + "\n", encoding="utf-8")
    result = cli(
        "extract",
        str(source),
        "-l",
        LABELS,
        "-m",
        str(tiny.base),
        "--adapter",
        str(tiny.adapter),
        "--quantize",
        "4bit",
        "--merge",
        "--max-new-tokens",
        "2",
    )
    assert result.exit_code == 0, result.output
    assert "Note: --merge ignored: a quantized model keeps its adapter separate." in result.stderr


def test_bitsandbytes_that_cannot_run_is_explained(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def broken(name: str, *args, **kwargs):
        if name == "bitsandbytes":
            raise ImportError("libbitsandbytes_cuda.so: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    from b2ner_cli.models.loading import load

    with pytest.raises(ModelError) as caught:
        load(ModelSpec(str(tiny.base), quantize="4bit"))
    assert caught.value.message == (
        "4bit loading needs bitsandbytes, which cannot run here (libbitsandbytes_cuda.so: cannot open shared object "
        "file)."
    )
    assert caught.value.hint is not None and "pip install -U bitsandbytes" in caught.value.hint


def test_not_enough_ram_is_refused_before_loading(tiny) -> None:
    from b2ner_cli.models.loading import load
    from b2ner_cli.models.placement import Hardware

    with pytest.raises(ModelError, match=r"needs about 1\.0 GiB of RAM on CPU in float32; this machine has 0\.5 GiB"):
        load(ModelSpec(str(tiny.base)), hardware=Hardware(cuda=False, ram_available=2**29))


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("RepositoryNotFoundError", "Model `org/missing`: no repo org/missing on the Hub (or it is private)."),
        ("GatedRepoError", "Model `org/missing` (org/missing) is gated on the Hub."),
        ("RevisionNotFoundError", "Model `org/missing`: revision v9 does not exist in org/missing."),
    ],
)
def test_hub_errors_become_one_line(monkeypatch: pytest.MonkeyPatch, error: str, message: str) -> None:
    import httpx2
    import huggingface_hub
    from huggingface_hub import errors

    from b2ner_cli.models import hub

    def refuse(*args, **kwargs):
        response = httpx2.Response(404, request=httpx2.Request("GET", "https://huggingface.co/api/models/org/missing"))
        raise getattr(errors, error)("refused", response=response)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    with pytest.raises(ModelError) as caught:
        hub.fetch("org/missing", revision="v9", offline=True)
    assert caught.value.message == message


def test_merge_default_follows_the_placement() -> None:
    from b2ner_cli.models.loading import should_merge
    from b2ner_cli.models.placement import Plan

    def plan(dtype: str, quantize: str | None) -> Plan:
        return Plan(device="cuda", dtype=dtype, quantize=quantize, max_memory=None, needed_bytes=0)  # type: ignore[arg-type]

    assert should_merge(plan("bfloat16", None)) and should_merge(plan("float16", None))
    assert not should_merge(plan("float32", None))  # CPU: kept separate, as upstream runs it
    assert not should_merge(plan("bfloat16", "4bit")) and not should_merge(plan("bfloat16", "8bit"))
    assert not should_merge(plan("bfloat16", None), trainable=True)

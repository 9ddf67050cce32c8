"""``b2ner extract`` end to end on a tiny real model: a random Llama + a LoRA adapter taught a few answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import cli, read_jsonl, scored

LABELS = "person,organization,location"
EN1 = "Barack Obama visited Microsoft in Seattle ."
EN2 = "It rained all day ."
EN3 = "Paris is big and Paris is old ."
EN4 = "Ada met Bob ."
ZH1 = "李明昨天去了北京。"

# Worked out by hand from the taught answers (see conftest.TAUGHT):
# EN1: "Barack Obama" 0-12; "Barack Obama visited " is 21 chars -> Microsoft 21-30;
# "Barack Obama visited Microsoft in " is 34 chars -> Seattle 34-41.
EN1_ENTITIES = [
    {"start": 0, "end": 12, "text": "Barack Obama", "label": "person"},
    {"start": 21, "end": 30, "text": "Microsoft", "label": "organization"},
    {"start": 34, "end": 41, "text": "Seattle", "label": "location"},
]
# EN3: "Paris" at 0 and after "Paris is big and " (17 chars); Napoleon is not in the text.
EN3_ENTITIES = [
    {"start": 0, "end": 5, "text": "Paris", "label": "location"},
    {"start": 17, "end": 22, "text": "Paris", "label": "location"},
]
EN3_UNMATCHED = [{"text": "Napoleon", "label": "person"}]
# EN4: "city" was not asked for -> dropped; Ada 0-3, Bob 8-11.
EN4_ENTITIES = [
    {"start": 0, "end": 3, "text": "Ada", "label": "person"},
    {"start": 8, "end": 11, "text": "Bob", "label": "person"},
]
# ZH1: 李0 明1 昨2 天3 去4 了5 北6 京7 。8
ZH1_ENTITIES = [
    {"start": 0, "end": 2, "text": "李明", "label": "人名"},
    {"start": 6, "end": 8, "text": "北京", "label": "地名"},
]



def model_args(tiny) -> list[str]:
    return ["-m", str(tiny.base), "--adapter", str(tiny.adapter), "-q"]



def test_txt_to_jsonl_file_with_offsets_and_order(tiny, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text(f"{EN1}\n\n{EN2}\n{EN3}\n{EN4}\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = cli("extract", str(source), "-l", LABELS, "-o", str(out), *model_args(tiny))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert scored(read_jsonl(out)) == [
        {"id": f"{source}:1", "text": EN1, "entities": EN1_ENTITIES, "unmatched": []},
        {"id": f"{source}:3", "text": EN2, "entities": [], "unmatched": []},
        {"id": f"{source}:4", "text": EN3, "entities": EN3_ENTITIES, "unmatched": EN3_UNMATCHED},
        {"id": f"{source}:5", "text": EN4, "entities": EN4_ENTITIES, "unmatched": []},
    ]
    assert not list(tmp_path.glob(".out.jsonl.*.tmp"))  # the writer's temporary file was renamed into place
    meta = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    assert meta["prompt_id"] == "b2ner.prompt.v1"
    assert meta["status"] == "complete"
    assert meta["backbone"] == str(tiny.base) and meta["adapter"] == str(tiny.adapter)
    assert meta["dtype"] == "float32" and meta["device"] == "cpu"
    assert meta["generation"]["decoding"] == "greedy" and meta["generation"]["max_new_tokens"] == 512
    assert meta["records_written"] == 4
    assert meta["stats"]["unknown_labels"] == 1 and meta["stats"]["unknown_label_names"] == {"city": 1}
    assert meta["stats"]["unmatched"] == 1 and meta["stats"]["entities"] == 7


def test_stdout_carries_only_jsonl_and_summary_goes_to_stderr(tiny, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text(EN4 + "\n", encoding="utf-8")
    result = cli("extract", str(source), "-l", LABELS, "-m", str(tiny.base), "--adapter", str(tiny.adapter))
    assert result.exit_code == 0
    assert scored([json.loads(line) for line in result.stdout.splitlines()]) == [
        {"id": f"{source}:1", "text": EN4, "entities": EN4_ENTITIES, "unmatched": []}
    ]
    assert result.stderr.startswith("2 entities in 1 document (1 prompt, ")
    assert "Dropped 1 mention with labels that were not asked for: city (1)." in result.stderr


def test_jsonl_with_per_record_labels_picks_language_per_record(tiny, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    records = [
        {"id": "zh-1", "text": ZH1, "labels": ["人名", "地名"]},
        {"text": EN1},
        {"id": 7, "body": "ignored", "text": EN2},
    ]
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    result = cli("extract", str(source), "-l", LABELS, "--keep-raw", *model_args(tiny))
    assert result.exit_code == 0, result.output
    assert scored([json.loads(line) for line in result.stdout.splitlines()]) == [
        {"id": "zh-1", "text": ZH1, "entities": ZH1_ENTITIES, "unmatched": [], "raw": " 人名: 李明; 地名: 北京"},
        {
            "id": f"{source}:2",
            "text": EN1,
            "entities": EN1_ENTITIES,
            "unmatched": [],
            "raw": " person: Barack Obama; organization: Microsoft; location: Seattle",
        },
        {"id": "7", "text": EN2, "entities": [], "unmatched": [], "raw": " None"},
    ]


def test_stdin_and_several_files_keep_input_order(tiny, tmp_path: Path) -> None:
    first = tmp_path / "a.txt"
    first.write_text(EN2 + "\n", encoding="utf-8")
    second = tmp_path / "b.txt"
    second.write_text(EN4 + "\n", encoding="utf-8")
    result = cli("extract", str(first), "-", str(second), "-l", LABELS, *model_args(tiny), input=EN1 + "\n")
    assert result.exit_code == 0, result.output
    lines = scored([json.loads(line) for line in result.stdout.splitlines()])
    assert [r["id"] for r in lines] == [f"{first}:1", "<stdin>:1", f"{second}:1"]
    assert lines[1]["entities"] == EN1_ENTITIES
    assert lines[2]["entities"] == EN4_ENTITIES


def test_table_format_highlights_entities(tiny, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text(EN1 + "\n" + EN3 + "\n", encoding="utf-8")
    result = cli("extract", str(source), "-l", LABELS, "--format", "table", *model_args(tiny))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert EN1 in out and "[0:12] Barack Obama  person" in out and "[34:41] Seattle  location" in out
    assert "(not in text) Napoleon  person" in out
    assert not out.lstrip().startswith("{")


def test_adapter_changes_the_answers(tiny, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from b2ner_cli.engine.base import encode_prompt
    from b2ner_cli.prompts import LabelSet, build_instruction

    source = tmp_path / "in.txt"
    source.write_text(EN1 + "\n", encoding="utf-8")
    with_adapter = cli("extract", str(source), "-l", LABELS, "--keep-raw", *model_args(tiny))
    bare = ["-m", str(tiny.base), "-q", "--max-new-tokens", "8"]
    without = cli("extract", str(source), "-l", LABELS, "--keep-raw", *bare)
    assert with_adapter.exit_code == 0 and without.exit_code == 0, with_adapter.output + without.output
    assert json.loads(with_adapter.stdout)["raw"] == " person: Barack Obama; organization: Microsoft; location: Seattle"
    # Without --adapter the answer is the bare backbone's: transformers' own greedy decoding of the same prompt.
    tokenizer = AutoTokenizer.from_pretrained(str(tiny.base))
    backbone = AutoModelForCausalLM.from_pretrained(str(tiny.base))
    ids = encode_prompt(tokenizer, build_instruction(EN1, LabelSet(tuple(LABELS.split(","))), "en"))
    out = backbone.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, eos_token_id=2, pad_token_id=2)
    new = out[0, len(ids) :].tolist()
    new = new[: new.index(2)] if 2 in new else new
    assert json.loads(without.stdout)["raw"] == tokenizer.decode(new, skip_special_tokens=True)


def test_long_document_is_chunked_and_offsets_map_back(tiny, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny.base))
    counts = [len(tokenizer.encode(s, add_special_tokens=False)) for s in (EN1, EN2, EN3)]
    budget = max(max(counts), 16)
    # Precondition for a meaningful test: no two sentences fit in one chunk, so each is its own prompt.
    assert counts[0] + counts[1] > budget and counts[1] + counts[2] > budget
    source = tmp_path / "doc.txt"
    source.write_text(f"{EN1}\n{EN2}\n{EN3}\n", encoding="utf-8")
    result = cli(
        "extract",
        str(source),
        "-l",
        LABELS,
        "--whole-file",
        "--keep-raw",
        "--max-chunk-tokens",
        str(budget),
        *model_args(tiny),
    )
    assert result.exit_code == 0, result.output
    record = scored(json.loads(result.stdout))
    # EN1 is 43 characters, EN2 19: EN2 starts at 44, EN3 at 44 + 19 + 1 = 64; Paris again at 64 + 17 = 81.
    assert record["text"] == f"{EN1}\n{EN2}\n{EN3}"
    assert record["entities"] == [
        *EN1_ENTITIES,
        {"start": 64, "end": 69, "text": "Paris", "label": "location"},
        {"start": 81, "end": 86, "text": "Paris", "label": "location"},
    ]
    assert record["unmatched"] == EN3_UNMATCHED
    assert record["raw"] == (
        " person: Barack Obama; organization: Microsoft; location: Seattle; location: Paris; person: Napoleon"
    )


@pytest.mark.parametrize(
    ("content", "extra", "message", "code"),
    [
        (None, [], "Input file {dir}/missing.txt does not exist.", 1),
        (b"fine\n\xff\xfe bad\n", [], "{dir}/in.txt, line 2: not valid UTF-8.", 1),
        (b'{"text": "a"}\n{"text": \n', ["--input-format", "jsonl"], "{dir}/in.txt, line 2: invalid JSON", 1),
        (b'{"body": "a"}\n', ["--input-format", "jsonl"], '{dir}/in.txt, line 1: record has no text field "text"', 1),
        (b"fine\n", ["-l", "person,person"], '--labels: duplicate label "person".', 2),
        (b"fine\n", ["-l", "person,,location"], "--labels: empty label.", 2),
    ],
)
def test_input_errors_are_one_line_with_exit_code(tmp_path: Path, content, extra, message, code) -> None:
    path = tmp_path / ("missing.txt" if content is None else "in.txt")
    if content is not None:
        path.write_bytes(content)
    args = ["extract", str(path), *extra]
    if "-l" not in extra:
        args += ["-l", LABELS]
    result = cli(*args, "--dry-run")
    assert result.exit_code == code
    # Records before the bad line were already streamed out (whole, valid lines); nothing when it failed earlier.
    streamed = [json.loads(line)["id"] for line in result.stdout.splitlines()]
    assert streamed == ([f"{path}:1"] if "line 2" in message else [])
    first = result.stderr.splitlines()[0]
    assert first.startswith("Error: " + message.format(dir=tmp_path))
    assert "Traceback" not in result.stderr


def test_no_labels_is_a_usage_error(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("hello\n", encoding="utf-8")
    result = cli("extract", str(source), "--dry-run")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: No labels given.\nHint: Pass --labels")


def test_jsonl_record_without_labels_names_its_line(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "a", "labels": ["x"]}\n{"text": "b"}\n', encoding="utf-8")
    result = cli("extract", str(source), "--dry-run")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {source}, line 2: no labels for this record.")


def test_default_model_missing_from_cache_offline(tmp_path: Path) -> None:
    # No --model: b2ner-7b. Tests run offline with an empty HF cache, so it must say what to run.
    source = tmp_path / "in.txt"
    source.write_text("hello\n", encoding="utf-8")
    result = cli("extract", str(source), "-l", LABELS)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: Model `b2ner-7b` (internlm/internlm2_5-7b) is not in the local cache and offline mode is on "
        "(--offline or HF_HUB_OFFLINE).\nHint: Run `b2ner models download b2ner-7b` where the Hub is reachable, "
        "or pass a local directory with -m ./dir.\n"
    )


def test_directory_that_is_not_a_model(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("hello\n", encoding="utf-8")
    result = cli("extract", str(source), "-l", LABELS, "-m", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: Model `{tmp_path}` is not a model directory: it has no config.json.")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("which", "message"),
    [
        # The other adapter was made for hidden 32 / intermediate 64. Its tensors are checked in name order, so
        # layer 0's mlp.down_proj comes first: [64 out, 128 in] in the model, but its lora_A takes 64 inputs.
        (
            "other_shape_adapter",
            "Error: Adapter `{adapter}` (its base model unknown) does not fit model `{model}`: "
            "model.layers.0.mlp.down_proj is 64x128 in the model but the adapter expects ?x64.",
        ),
        ("wrong_target_adapter", "Error: Adapter `{adapter}` targets modules wqkv that model `{model}` does not have."),
    ],
)
def test_adapter_that_does_not_fit_names_both(tiny, tmp_path: Path, which: str, message: str) -> None:
    source = tmp_path / "in.txt"
    source.write_text("hello\n", encoding="utf-8")
    adapter = getattr(tiny, which)
    result = cli(
        "extract",
        str(source),
        "-l",
        LABELS,
        "-m",
        str(tiny.base),
        "--adapter",
        str(adapter),
        "-o",
        str(tmp_path / "out.jsonl"),
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(message.format(adapter=adapter, model=tiny.base))
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_every_llm_entity_has_a_score_and_min_score_filters(tiny, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text(EN1 + "\n", encoding="utf-8")
    first = cli("extract", str(source), "-l", LABELS, "--keep-raw", *model_args(tiny))
    assert first.exit_code == 0, first.output
    record = json.loads(first.stdout)
    scores = {e["text"]: e["score"] for e in record["entities"]}
    assert set(scores) == {"Barack Obama", "Microsoft", "Seattle"}
    assert all(0.0 < s <= 1.0 for s in scores.values())
    assert [{k: v for k, v in e.items() if k != "score"} for e in record["entities"]] == EN1_ENTITIES
    # A threshold between the scores keeps exactly the entities at or above it; the answer itself is unchanged.
    ordered = sorted(scores.values())
    cut = (ordered[0] + ordered[-1]) / 2 if ordered[0] < ordered[-1] else ordered[0]
    second = cli("extract", str(source), "-l", LABELS, "--keep-raw", "--min-score", str(cut), *model_args(tiny))
    kept = json.loads(second.stdout)
    assert kept["raw"] == record["raw"]
    assert {e["text"] for e in kept["entities"]} == {t for t, s in scores.items() if s >= cut}

"""plan_batches (length-sorted, token-budgeted batches) and the output writers."""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import stat
import sys
from pathlib import Path

import pytest

from b2ner_cli.engine.batching import plan_batches
from b2ner_cli.io.writers import JsonlWriter, write_json_atomic

# --- plan_batches -----------------------------------------------------------------------------------------------


def test_no_items_gives_no_batch() -> None:
    assert plan_batches([], max_batch_size=4, max_batch_tokens=100) == []


def test_items_are_ordered_longest_first() -> None:
    assert plan_batches([5, 10, 3], max_batch_size=8, max_batch_tokens=100) == [[1, 0, 2]]


def test_equal_lengths_keep_their_input_order() -> None:
    assert plan_batches([4, 7, 4, 4], max_batch_size=8, max_batch_tokens=100) == [[1, 0, 2, 3]]


def test_size_cap_closes_batches() -> None:
    assert plan_batches([1, 1, 1, 1, 1], max_batch_size=2, max_batch_tokens=1000) == [[0, 1], [2, 3], [4]]
    assert plan_batches([3, 1, 2], max_batch_size=1, max_batch_tokens=1000) == [[0], [2], [1]]


def test_token_cap_counts_size_times_longest_and_allows_equality() -> None:
    # longest first: 10, 9, 8, 7, 3. [10, 9, 8] costs 3 * 10 = 30 <= 30; adding 7 would cost 40.
    # [7, 3] costs 2 * 7 = 14.
    assert plan_batches([10, 9, 8, 7, 3], max_batch_size=10, max_batch_tokens=30) == [[0, 1, 2], [3, 4]]


def test_token_cap_one_below_the_cost_closes_earlier() -> None:
    # [10, 9] = 20; adding 8 would cost 30 > 29. [8, 7, 3] = 24.
    assert plan_batches([10, 9, 8, 7, 3], max_batch_size=10, max_batch_tokens=29) == [[0, 1], [2, 3, 4]]


def test_item_over_the_token_budget_runs_alone() -> None:
    # longest first: 60 (index 2), 50 (index 0), then 5 and 5. Each long one is over 40 and runs alone.
    assert plan_batches([50, 5, 60, 5], max_batch_size=8, max_batch_tokens=40) == [[2], [0], [1, 3]]


def test_item_exactly_at_the_budget_runs_alone_and_the_next_one_starts_a_batch() -> None:
    assert plan_batches([2, 40, 2], max_batch_size=8, max_batch_tokens=40) == [[1], [0, 2]]


@pytest.mark.parametrize(("size", "tokens"), [(0, 10), (-1, 10), (4, 0), (4, -5)])
def test_limits_below_one_raise_value_error(size: int, tokens: int) -> None:
    with pytest.raises(ValueError):
        plan_batches([1, 2], max_batch_size=size, max_batch_tokens=tokens)


@pytest.mark.parametrize("seed", range(20))
def test_every_index_once_within_both_caps(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randint(0, 120) for _ in range(rng.randint(1, 60))]
    size, tokens = rng.randint(1, 9), rng.randint(1, 400)
    batches = plan_batches(lengths, max_batch_size=size, max_batch_tokens=tokens)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    for batch in batches:
        assert 1 <= len(batch) <= size
        if len(batch) > 1:
            assert len(batch) * max(lengths[i] for i in batch) <= tokens
    # greedy: the first item of the next batch did not fit in this one
    for batch, _following in itertools.pairwise(batches):
        longest = lengths[batch[0]]
        assert len(batch) + 1 > size or (len(batch) + 1) * longest > tokens


# --- JsonlWriter ------------------------------------------------------------------------------------------------


def test_file_is_written_to_a_hidden_temporary_file_and_renamed_on_close(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    writer = JsonlWriter(target)
    writer.write({"id": "a", "entities": []})
    assert not target.exists()
    [part] = tmp_path.iterdir()
    assert part.name.startswith(f".out.jsonl.{os.getpid()}-") and part.name.endswith(".tmp")
    assert part.read_text(encoding="utf-8") == '{"id": "a", "entities": []}\n'  # each line flushed
    writer.write({"id": "b", "text": "北京"})
    assert writer.count == 2
    writer.close()
    assert not part.exists()
    assert target.read_bytes() == '{"id": "a", "entities": []}\n{"id": "b", "text": "北京"}\n'.encode()


def test_context_manager_renames_on_success_and_creates_parent_directories(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "out.jsonl"
    with JsonlWriter(str(target)) as writer:
        writer.write({"n": 1})
    assert target.read_text(encoding="utf-8") == '{"n": 1}\n'
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.jsonl"]


def test_error_inside_the_writer_keeps_the_complete_lines(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="boom"), JsonlWriter(target) as writer:
        writer.write({"n": 1})
        writer.write({"n": 2})
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    assert [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()] == [{"n": 1}, {"n": 2}]


def test_unserialisable_record_leaves_earlier_lines_whole(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    writer = JsonlWriter(target)
    writer.write({"n": 1})
    with pytest.raises(TypeError):
        writer.write({"n": object()})
    writer.close()
    assert target.read_text(encoding="utf-8") == '{"n": 1}\n'
    assert writer.count == 1


def test_existing_output_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("old line\nold line 2\n", encoding="utf-8")
    with JsonlWriter(target) as writer:
        writer.write({"new": True})
    assert target.read_text(encoding="utf-8") == '{"new": true}\n'


def test_closing_twice_is_harmless(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    writer = JsonlWriter(target)
    writer.write({"a": 1})
    writer.close()
    target.write_text("changed\n", encoding="utf-8")
    writer.close()  # does not rename again or reopen
    assert target.read_text(encoding="utf-8") == "changed\n"


def test_no_records_still_gives_an_empty_file(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    JsonlWriter(target).close()
    assert target.read_bytes() == b""


def test_stream_output_writes_lines_and_leaves_the_stream_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    buffer = io.StringIO()
    with JsonlWriter(None, stdout=buffer) as writer:
        writer.write({"text": "Zürich", "n": [1, 2]})
        writer.write({"x": None})
    assert buffer.getvalue() == '{"text": "Zürich", "n": [1, 2]}\n{"x": null}\n'
    assert not buffer.closed
    assert writer.count == 2
    assert list(tmp_path.iterdir()) == []  # no file written


def test_dash_means_the_stream() -> None:
    buffer = io.StringIO()
    writer = JsonlWriter("-", stdout=buffer)
    writer.write({"a": 1})
    writer.close()
    assert writer.path is None
    assert buffer.getvalue() == '{"a": 1}\n'


def test_default_stream_is_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    writer = JsonlWriter(None)
    writer.write({"a": "b"})
    writer.close()
    assert capsys.readouterr().out == '{"a": "b"}\n'
    assert not sys.stdout.closed


# --- write_json_atomic ------------------------------------------------------------------------------------------


def test_write_json_atomic_writes_indented_utf8_with_a_final_newline(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "meta.json"
    write_json_atomic(target, {"a": [1, 2], "名": "值"})
    assert target.read_bytes() == '{\n  "a": [\n    1,\n    2\n  ],\n  "名": "值"\n}\n'.encode()
    assert sorted(p.name for p in target.parent.iterdir()) == ["meta.json"]


def test_write_json_atomic_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "meta.json"
    target.write_text("old", encoding="utf-8")
    write_json_atomic(target, [])
    assert target.read_text(encoding="utf-8") == "[]\n"


def test_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "meta.json"
    target.write_text('{"old": 1}\n', encoding="utf-8")
    with pytest.raises(TypeError):
        write_json_atomic(target, {"bad": object()})
    assert target.read_text(encoding="utf-8") == '{"old": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "meta.json", {})
        with JsonlWriter(tmp_path / "out.jsonl"):
            pass
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "meta.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "out.jsonl").stat().st_mode) == 0o644

"""The HTML view: rendering (offsets worked out by hand, escaping, overlaps, legend, unmatched), ``b2ner view``,
``extract --format html``, and the page in a real headless chromium (skipped when there is none)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from helpers import cli, write_jsonl

from b2ner_cli.io.readers import Document
from b2ner_cli.models.spec import ModelSpec
from b2ner_cli.prompts import LabelSet
from b2ner_cli.records import Entity, Record, Unmatched
from b2ner_cli.runs.run import OutputSpec, RunSpec, Stopped, execute
from b2ner_cli.runs.settings import ExtractSettings, Task
from b2ner_cli.view import HtmlSink, highlight


class Page(HTMLParser):
    """What a browser would build, as far as the tests need: the marks (label, start, end, text inside), the tags,
    and the text of each document's paragraph."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.marks: list[tuple[str, int, int, str]] = []
        self.texts: list[str] = []
        self.ids: list[str] = []
        self._open: list[list[Any]] = []
        self._in_text = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        if tag == "mark":
            self._open.append([found["data-label"], int(found["data-start"] or ""), int(found["data-end"] or ""), ""])
        elif tag == "p" and found.get("class") == "text":
            self._in_text = True
            self.texts.append("")
        elif tag == "article":
            self.ids.append(found["data-id"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "mark":
            self.marks.append(tuple(self._open.pop()))  # type: ignore[arg-type]
        elif tag == "p":
            self._in_text = False

    def handle_data(self, data: str) -> None:
        for mark in self._open:
            mark[3] += data
        if self._in_text:
            self.texts[-1] += data


KEYS = {"person": "k0", "location": "k1", "organization": "k2"}


def test_highlight_puts_marks_on_the_hand_worked_characters() -> None:
    text = "Ada Lovelace met Babbage in London."
    entities = [Entity(0, 12, "Ada Lovelace", "person", score=0.9), Entity(17, 24, "Babbage", "person"),
                Entity(28, 34, "London", "location", uncertainty=0.25, source="tagger")]  # fmt: skip
    page = Page(f'<p class="text">{highlight(text, entities, KEYS)}</p>')
    assert sorted(page.marks, key=lambda m: m[1]) == [
        ("person", 0, 12, "Ada Lovelace"),
        ("person", 17, 24, "Babbage"),
        ("location", 28, 34, "London"),
    ]
    assert page.texts == [text]
    html = highlight(text, entities, KEYS)
    assert 'title="person · score 0.900"' in html and 'title="location · uncertainty 0.250 · from tagger"' in html


def test_offsets_count_characters_before_escaping() -> None:
    # "x < y & z": the y is character 4, though "&lt;" makes it the 7th character of the HTML.
    assert highlight("x < y & z", [Entity(4, 5, "y", "person")], KEYS) == (
        'x &lt; <mark class="k0" data-label="person" data-start="4" data-end="5" title="person">y</mark> &amp; z'
    )


def _mark(key: str, label: str, start: int, end: int, cut: bool = False) -> str:
    return (f'<mark class="{"cut " if cut else ""}{key}" data-label="{label}" data-start="{start}" data-end="{end}" '
            f'title="{label}">')  # fmt: skip


def test_nested_entities_sit_inside_the_outer_one() -> None:
    entities = [Entity(8, 15, "England", "location"), Entity(0, 15, "Bank of England", "organization")]
    assert highlight("Bank of England", entities, KEYS) == (
        f"{_mark('k2', 'organization', 0, 15)}Bank of {_mark('k1', 'location', 8, 15)}England</mark></mark>"
    )


def test_two_labels_on_one_span_are_two_marks_first_given_outside() -> None:
    entities = [Entity(0, 5, "Paris", "location"), Entity(0, 5, "Paris", "person")]
    assert highlight("Paris!", entities, KEYS) == (
        f"{_mark('k1', 'location', 0, 5)}{_mark('k0', 'person', 0, 5)}Paris</mark></mark>!"
    )


def test_crossing_entities_are_cut_and_continued() -> None:
    keys = {"x": "k0", "y": "k1"}
    # x = "abcde" (0-5), y = "defgh" (3-8): y is cut where x ends and continues after it.
    html = highlight("abcdefgh", [Entity(0, 5, "abcde", "x"), Entity(3, 8, "defgh", "y")], keys)
    assert html == (
        f"{_mark('k0', 'x', 0, 5)}abc{_mark('k1', 'y', 3, 8, cut=True)}de</mark></mark>"
        f"{_mark('k1', 'y', 3, 8)}fgh</mark>"
    )
    assert sorted(m[3] for m in Page(html).marks) == ["abcde", "de", "fgh"]


def test_adjacent_entities_stay_apart() -> None:
    keys = {"a": "k0", "b": "k1"}
    assert highlight("AB", [Entity(0, 1, "A", "a"), Entity(1, 2, "B", "b")], keys) == (
        f"{_mark('k0', 'a', 0, 1)}A</mark>{_mark('k1', 'b', 1, 2)}B</mark>"
    )


HOSTILE = Record(
    '"><img src=x onerror=alert(1)>',
    "Say <script>alert(1)</script> then </script> to Ada & co.",
    # Ada: "Say " 4 + "<script>" 8 + "alert(1)" 8 + "</script>" 9 + " then " 6 + "</script>" 9 + " to " 4 = 48
    [Entity(48, 51, "Ada", '<b>"label"</b>')],
    [Unmatched("</script><script>alert(2)</script>", '<b>"label"</b>')],
    raw="<script>alert(3)</script>",
)


def page_of(records: list[Record], manifest: dict[str, object] | None = None, **options: Any) -> str:
    stream = io.StringIO()
    sink = HtmlSink(None, stream=stream, **options)
    for record in records:
        sink.write(record)
    sink.describe_run(manifest or {})
    assert sink.close(complete=True) is None
    return stream.getvalue()


def test_every_string_from_the_data_stays_text() -> None:
    html = page_of([HOSTILE], {"backbone": "</script><script>alert(4)</script>", "labels": ["</style>"]},
                   title="<i>t</i>", keep_raw=True)  # fmt: skip
    page = Page(html)
    assert page.tags.count("script") == 1 and page.tags.count("style") == 2  # ours: the JS; the CSS and the colours
    assert "img" not in page.tags and "b" not in page.tags and "i" not in page.tags
    assert page.texts == [HOSTILE.text] and page.ids == [HOSTILE.id]
    assert page.marks == [('<b>"label"</b>', 48, 51, "Ada")]
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in html  # the raw answer, shown as text
    assert "&lt;/script&gt;&lt;script&gt;alert(2)" in html and "&lt;/script&gt;&lt;script&gt;alert(4)" in html


def test_legend_lists_the_asked_labels_first_with_counts_and_unmatched_per_document() -> None:
    records = [
        Record("1", "Ada met Acme.", [Entity(0, 3, "Ada", "person"), Entity(8, 12, "Acme", "organization")],
               [Unmatched("Babbage", "person")]),
        Record("2", "Ada.", [Entity(0, 3, "Ada", "person")], []),
        Record("3", "Nothing.", [], []),
    ]  # fmt: skip
    html = page_of(records, {"labels": ["location", "person"], "status": "complete"})
    # keys follow first appearance: person k0, organization k1; the asked "location" (never found) gets k2
    assert (
        '<label class="key k2" title="show or hide location"><input type="checkbox" checked data-key="k2"> '
        'location <span class="n">0</span></label>'
        '<label class="key k0" title="show or hide person"><input type="checkbox" checked data-key="k0"> '
        'person <span class="n">2</span></label>'
        '<label class="key k1" title="show or hide organization"><input type="checkbox" checked data-key="k1"> '
        'organization <span class="n">1</span></label></div>'
    ) in html
    unmatched = '<div class="unmatched">Not found in the text:<ul><li><span class="label k0">person</span> Babbage</li>'
    assert unmatched in html
    assert html.count('class="unmatched"') == 1 and html.count('<p class="none">no entities</p>') == 1
    assert "body.off-k1 mark.k1 { background: transparent;" in html
    assert "<dt>this page</dt><dd>3 documents, 3 entities, 1 unmatched mention</dd>" in html
    assert 'class="stopped"' not in html


def test_header_shows_what_made_the_run() -> None:
    manifest = {"backbone": "internlm/internlm2_5-7b", "backbone_revision": "abc123", "adapter": "Umean/B2NER",
                "recognizer": "llm", "labels": ["person"], "started_at": "2025-01-02T03:04:05+00:00",
                "status": "complete", "model_spec": {"model": "b2ner-7b"}}  # fmt: skip
    html = page_of([], manifest, title="out.jsonl")
    assert (
        "<dl><dt>model</dt><dd>internlm/internlm2_5-7b @ abc123</dd><dt>adapter</dt><dd>Umean/B2NER</dd>"
        "<dt>recognizer</dt><dd>llm</dd><dt>labels</dt><dd>person</dd>"
        "<dt>started</dt><dd>2025-01-02T03:04:05+00:00</dd><dt>status</dt><dd>complete</dd>"
    ) in html
    assert "<title>out.jsonl · b2ner</title>" in html and "<h1>out.jsonl</h1>" in html
    assert html.startswith("<!DOCTYPE html>") and html.endswith("</html>\n")
    assert "http://" not in html and "https://" not in html and " src=" not in html  # nothing fetched


TEXTS = ["Ada lives in Paris .", "Nothing here .", "Acme hired Ada .", "Paris and Paris .", "Ada ."]


def interrupted_after(count: int) -> Iterator[Document]:
    for i, text in enumerate(TEXTS[:count]):
        yield Document(str(i), text)
    raise KeyboardInterrupt


def test_an_interrupted_run_keeps_the_page_so_far_beside_an_existing_one(fake_model: str, tmp_path: Path) -> None:
    out = tmp_path / "out.html"
    out.write_text("earlier page", encoding="utf-8")
    task = Task.of(LabelSet(("person", "location")), settings=ExtractSettings(window=2))
    spec = RunSpec(model=ModelSpec("fake"), task=task, output=OutputSpec(str(out)))
    events: list[object] = []
    with pytest.raises(KeyboardInterrupt):
        execute(spec, documents=interrupted_after(2), sink=HtmlSink(out), events=events.append)
    assert out.read_text(encoding="utf-8") == "earlier page"
    partial = tmp_path / "out.html.partial"
    page = Page(html := partial.read_text(encoding="utf-8"))
    assert page.ids == ["0", "1"] and page.marks == [("person", 0, 3, "Ada"), ("location", 13, 18, "Paris")]
    assert "The run was interrupted: this page holds the 2 records completed before it stopped." in html
    assert "<dt>recognizer</dt><dd>fake</dd>" in html and html.endswith("</html>\n")
    assert [e for e in events if isinstance(e, Stopped)] == [Stopped(partial, 2)]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# -- the commands --------------------------------------------------------------------------------------------------

PREDICTIONS = [
    {"id": "a", "text": "Ada went to Paris.", "unmatched": [{"text": "Babbage", "label": "person"}],
     "entities": [{"start": 0, "end": 3, "text": "Ada", "label": "person", "score": 0.9},
                  {"start": 12, "end": 17, "text": "Paris", "label": "location"}]},
    {"id": "b", "text": "No one.", "entities": [], "unmatched": []},
]  # fmt: skip


def test_view_writes_pred_html_beside_the_input_with_its_metadata(tmp_path: Path) -> None:
    pred = write_jsonl(tmp_path / "pred.jsonl", PREDICTIONS)
    (tmp_path / "pred.jsonl.meta.json").write_text(json.dumps({"backbone": "my-model", "status": "complete"}))
    result = cli("view", str(pred))
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr == f"2 documents, 2 entities -> {tmp_path / 'pred.html'}\n"
    html = (tmp_path / "pred.html").read_text(encoding="utf-8")
    page = Page(html)
    assert page.ids == ["a", "b"] and page.marks == [("person", 0, 3, "Ada"), ("location", 12, 17, "Paris")]
    assert "<dt>model</dt><dd>my-model</dd>" in html and '<span class="label k0">person</span> Babbage' in html

    again = cli("view", str(pred))
    assert again.exit_code == 2 and "pred.html exists." in again.stderr and "--overwrite" in again.stderr
    assert cli("view", str(pred), "--overwrite", "-q").exit_code == 0


def test_view_to_a_named_file_or_stdout(tmp_path: Path) -> None:
    pred = write_jsonl(tmp_path / "pred.jsonl", PREDICTIONS)
    named = tmp_path / "report.html"
    named.write_text("old", encoding="utf-8")
    assert cli("view", str(pred), "-o", str(named), "-q").exit_code == 0  # an -o the user names is replaced
    assert Page(named.read_text(encoding="utf-8")).ids == ["a", "b"]
    result = cli("view", str(pred), "-o", "-")
    assert result.exit_code == 0 and Page(result.stdout).ids == ["a", "b"] and result.stderr == ""
    assert not (tmp_path / "pred.html").exists()


def test_view_refuses_bad_input_and_leaves_no_page(tmp_path: Path) -> None:
    pred = write_jsonl(tmp_path / "pred.jsonl", [PREDICTIONS[0], {"id": "c", "text": "Ada", "entities": [
        {"start": 1, "end": 9, "text": "da", "label": "person"}]}])  # fmt: skip
    result = cli("view", str(pred))
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: {pred}, line 2: entity 1-9 (person) lies outside the text, which has 3 characters."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.jsonl"]

    same = cli("view", str(pred), "-o", str(pred))
    assert same.exit_code == 2 and f"-o {pred} is also an input." in same.stderr
    missing = cli("view", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 1 and "nope.jsonl does not exist." in missing.stderr


def test_view_does_not_import_torch(tmp_path: Path) -> None:
    pred = write_jsonl(tmp_path / "pred.jsonl", PREDICTIONS)
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom b2ner_cli.cli.app import app\n"
        f"r = CliRunner().invoke(app, ['view', {str(pred)!r}, '-q'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print([m for m in ('torch', 'transformers', 'peft') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]" and (tmp_path / "pred.html").is_file()


def test_extract_format_html_through_the_run(fake_model: str, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("Ada lives in Paris .\nNothing here .\n", encoding="utf-8")
    out = tmp_path / "out.html"
    result = cli("extract", str(source), "-m", "fake", "-l", "person,location", "--format", "html", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    html = out.read_text(encoding="utf-8")
    page = Page(html)
    assert page.ids == [f"{source}:1", f"{source}:2"]
    assert page.marks == [("person", 0, 3, "Ada"), ("location", 13, 18, "Paris")]
    assert 'title="person · score 0.900 · from fake"' in html
    assert "<dt>recognizer</dt><dd>fake</dd>" in html and "<dt>labels</dt><dd>person, location</dd>" in html
    assert "<h1>in.txt</h1>" in html
    meta = json.loads((tmp_path / "out.html.meta.json").read_text(encoding="utf-8"))
    assert meta["status"] == "complete" and meta["records_written"] == 2


def test_extract_format_html_to_stdout_when_redirected(fake_model: str, tmp_path: Path) -> None:
    result = cli("extract", "-", "-m", "fake", "-l", "person", "--format", "html", "-q", input="Ada .\n")
    assert result.exit_code == 0 and Page(result.stdout).marks == [("person", 0, 3, "Ada")]


# -- in a real browser -----------------------------------------------------------------------------------------------


def realistic() -> tuple[list[Record], dict[str, object]]:
    """The README's page: the example texts with entities whose offsets were counted by hand, then filler to page."""

    def record(id_: str, text: str, spans: list[tuple[int, int, str, float]], missing: tuple[str, ...] = ()) -> Record:
        entities = [Entity(s, e, text[s:e], label, score=score) for s, e, label, score in spans]
        return Record(id_, text, entities, [Unmatched(m, "organization") for m in missing])

    records = [
        record("en.txt:1", "Barack Obama visited Microsoft headquarters in Redmond on Tuesday.",
               [(0, 12, "person", 0.98), (21, 30, "organization", 0.95), (47, 54, "location", 0.93),
                (58, 65, "date", 0.71)]),
        record("en.txt:2", "The European Central Bank raised interest rates in Frankfurt last March.",
               [(4, 25, "organization", 0.97), (51, 60, "location", 0.96), (61, 71, "date", 0.64)]),
        record("en.txt:3", "Marie Curie won the Nobel Prize in Physics in 1903 together with Pierre Curie.",
               [(0, 11, "person", 0.99), (20, 42, "award", 0.88), (46, 50, "date", 0.9), (65, 77, "person", 0.97)],
               ("Sorbonne",)),
        record("news-1", "Angela Merkel met Emmanuel Macron in Berlin to discuss the Airbus contract.",
               [(0, 13, "person", 0.99), (18, 33, "person", 0.98), (37, 43, "location", 0.97),
                (59, 65, "organization", 0.83)]),
        record("news-4", "The Bank of England kept rates at 5%.",
               [(4, 19, "organization", 0.94), (12, 19, "location", 0.61)]),
        record("news-3", "马云在杭州创办了阿里巴巴。", [(0, 2, "person", 0.97), (3, 5, "location", 0.95),
                                               (8, 12, "organization", 0.96)]),
        record("note", 'A note with <script>alert("x")</script> mentions Ada.', [(49, 52, "person", 0.8)]),
    ]  # fmt: skip
    for i in range(len(records) + 1, 121):
        text = f"Filler {i}: Ada went to Paris."
        at = text.index("Ada")
        records.append(record(f"filler-{i}", text, [(at, at + 3, "person", 0.9), (at + 12, at + 17, "location", 0.8)]))
    manifest = {"b2ner_version": "0.1.0", "recognizer": "llm", "backbone": "internlm/internlm2_5-7b-chat",
                "backbone_revision": "main", "adapter": "Umean/B2NER-Internlm2.5-7B-LoRA", "language": "auto",
                "labels": ["person", "organization", "location", "date", "award"], "inputs": ["examples/en.txt"],
                "started_at": "2025-06-01T09:30:00+00:00", "finished_at": "2025-06-01T09:31:12+00:00",
                "status": "complete"}  # fmt: skip
    return records, manifest


def _chromium() -> str | None:
    return next((p for name in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(name))), None)


def test_the_page_in_a_headless_browser(tmp_path: Path) -> None:
    executable = _chromium()
    if executable is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install '.[dev]')")
    records, manifest = realistic()
    out = tmp_path / "view.html"
    sink = HtmlSink(out, title="en.txt")
    for record in records:
        sink.write(record)
    sink.describe_run(manifest)
    sink.close(complete=True)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 820})
            requests: list[str] = []
            errors: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.add_init_script("window.alerted = 0; window.alert = function () { window.alerted += 1; };")
            page.goto(out.as_uri())
            assert requests == [out.as_uri()] and errors == []  # self-contained, and the script ran cleanly
            assert page.evaluate("window.alerted") == 0

            def visible(selector: str) -> Any:
                return page.eval_on_selector_all(
                    f"article.doc:not([hidden]) {selector}",
                    "els => els.map(e => [e.dataset.label, +e.dataset.start, +e.dataset.end, e.textContent])",
                )

            # the highlights sit on the hand-counted characters
            first = page.eval_on_selector_all(
                "article.doc:nth-of-type(1) mark",
                "els => els.map(e => [e.dataset.label, +e.dataset.start, +e.dataset.end, e.textContent])",
            )
            assert first == [["person", 0, 12, "Barack Obama"], ["organization", 21, 30, "Microsoft"],
                             ["location", 47, 54, "Redmond"], ["date", 58, 65, "Tuesday"]]  # fmt: skip
            assert page.eval_on_selector(
                "article[data-id='news-4'] mark mark",
                "e => [e.textContent, e.parentElement.textContent, e.parentElement.dataset.label]",
            ) == ["England", "Bank of England", "organization"]
            note = page.text_content("article[data-id='note'] p.text")
            assert note == 'A note with <script>alert("x")</script> mentions Ada.'
            # every mark's text is its slice of the document's text, in the browser's own string indexing
            assert page.evaluate("""() => [...document.querySelectorAll('article.doc')].every(a => {
                const text = a.querySelector('p.text').textContent;
                return [...a.querySelectorAll('mark:not(.cut)')].every(m =>
                    text.slice(+m.dataset.start, +m.dataset.end).endsWith(m.textContent));
            })""")

            # the label filter: unticking "person" clears its highlight and no other
            person = "article.doc:nth-of-type(1) mark[data-label=person]"
            place = "article.doc:nth-of-type(1) mark[data-label=location]"
            background = "e => getComputedStyle(e).backgroundColor"
            coloured = page.eval_on_selector(person, background)
            assert coloured not in ("rgba(0, 0, 0, 0)", "transparent")
            page.click("#legend label:has-text('person') input")
            assert page.eval_on_selector(person, background) == "rgba(0, 0, 0, 0)"
            assert page.eval_on_selector(place, background) not in ("rgba(0, 0, 0, 0)", "transparent")
            page.screenshot(path=str(tmp_path / "filtered.png"))
            page.click("#legend label:has-text('person') input")
            assert page.eval_on_selector(person, background) == coloured

            # paging: 120 documents, 50 a page
            assert page.is_visible("#pager")
            assert page.text_content("#page-info") == "of 3 (documents 1–50 of 120)"
            ids = "els => els.map(e => e.dataset.id)"
            assert page.eval_on_selector_all("article.doc:not([hidden])", ids) == [r.id for r in records[:50]]
            page.click("#next")
            assert page.eval_on_selector_all("article.doc:not([hidden])", ids) == [r.id for r in records[50:100]]
            assert page.text_content("#page-info") == "of 3 (documents 51–100 of 120)"
            page.fill("#page-number", "3")
            page.dispatch_event("#page-number", "change")
            assert page.eval_on_selector_all("article.doc:not([hidden])", ids) == [r.id for r in records[100:]]
            assert len(visible("mark")) == 40  # 20 filler documents, 2 marks each
            assert page.is_disabled("#next") and not page.is_disabled("#prev")
            page.click("#prev")
            page.click("#prev")
            assert page.eval_on_selector_all("article.doc:not([hidden])", ids)[0] == "en.txt:1"

            shot = tmp_path / "view.png"
            page.screenshot(path=str(shot))
            assert shot.read_bytes().startswith(b"\x89PNG")
            readme_png = os.environ.get("B2NER_VIEW_SCREENSHOT")  # regenerate the README's docs/view.png
            if readme_png:
                shutil.copyfile(shot, readme_png)
        finally:
            browser.close()

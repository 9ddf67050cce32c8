"""``b2ner serve``: routes, request errors and dynamic batching on the fake recognizer; the command's wiring, a port in
use, the missing extra and Ctrl-C; and a real uvicorn server on loopback answering as ``b2ner extract`` writes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeRecognizer
from helpers import cli, interruptible, read_jsonl, write_jsonl

from b2ner_cli.errors import UsageError
from b2ner_cli.io.readers import Document
from b2ner_cli.prompts import LabelSet
from b2ner_cli.records import Record
from b2ner_cli.runs.recognizer import ProgressHook
from b2ner_cli.runs.settings import RunStats, Task
from b2ner_cli.serve import Batcher, ServeSettings, Service

HAVE_EXTRA = all(find_spec(name) is not None for name in ("starlette", "uvicorn", "httpx"))
needs_extra = pytest.mark.skipif(not HAVE_EXTRA, reason="needs the serve extra: pip install 'b2ner[serve]' httpx")

# The fake finds Ada (person, 0.9), Paris (location, 0.75) and Acme (organization, 0.5) when asked for their label.
# "Ada met Acme in Paris.": Ada 0-3; "Ada met " is 8 chars -> Acme 8-12; "Ada met Acme in " is 16 -> Paris 16-21.
TEXT = "Ada met Acme in Paris."
ADA = {"start": 0, "end": 3, "text": "Ada", "label": "person", "score": 0.9, "source": "fake"}
ACME = {"start": 8, "end": 12, "text": "Acme", "label": "organization", "score": 0.5, "source": "fake"}
PARIS = {"start": 16, "end": 21, "text": "Paris", "label": "location", "score": 0.75, "source": "fake"}


def record(doc_id: str, text: str, *entities: dict[str, object]) -> dict[str, object]:
    return {"id": doc_id, "text": text, "entities": list(entities), "unmatched": []}


def service(recognizer: Any = None, labels: tuple[str, ...] | None = ("person", "location"), **limits: Any) -> Service:
    task = Task.of(LabelSet(labels) if labels else None)
    return Service(recognizer or FakeRecognizer(), task, ServeSettings(**limits))


@pytest.fixture
def client_for() -> Iterator[Callable[[Service], Any]]:
    """A Starlette TestClient over a service's app (its lifespan runs: closing it closes the batcher)."""
    from starlette.testclient import TestClient

    from b2ner_cli.serve import create_app

    opened: list[Any] = []

    def make(svc: Service) -> Any:
        client = TestClient(create_app(svc)).__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def fire(requests: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run the calls at the same moment in threads; their results in order."""
    results: list[Any] = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def run(i: int) -> None:
        start.wait()
        results[i] = requests[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


# -- routes --------------------------------------------------------------------------------------------------------


@needs_extra
def test_extract_health_and_info(client_for) -> None:
    client = client_for(service())
    answer = client.post("/extract", json={"texts": [TEXT, "Nothing here."], "labels": ["person", "organization"]})
    assert answer.status_code == 200
    assert answer.json() == {"records": [record("0", TEXT, ADA, ACME), record("1", "Nothing here.")]}
    # no labels: the service's own (person, location); ids as given
    answer = client.post("/extract", json={"texts": [TEXT], "ids": ["a-1"]})
    assert answer.json() == {"records": [record("a-1", TEXT, ADA, PARIS)]}
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert (info["recognizer"], info["model"], info["adapter"]) == ("fake", "fake", None)
    assert info["labels"] == ["person", "location"]
    assert info["limits"]["max_texts"] == 256 and info["limits"]["max_chars"] == 100_000


@needs_extra
def test_other_routes_and_methods_are_json_404_and_405(client_for) -> None:
    client = client_for(service())
    missing = client.get("/predict")
    assert missing.status_code == 404
    assert missing.json() == {"error": "No route GET /predict.",
                              "hint": "The routes are POST /extract, GET /health and GET /info."}  # fmt: skip
    wrong = client.get("/extract")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "Method GET is not allowed on /extract."
    assert wrong.headers["allow"] == "POST"
    assert client.post("/health").status_code == 405
    assert client.delete("/info").status_code == 405


BAD = [
    (b"{texts", 400, "The request body is not valid JSON (Expecting property name enclosed in double quotes at line "
     "1, column 2)."),
    (b"\xff\xfe", 400, "The request body is not UTF-8."),
    (b'["Ada"]', 400, "The request body must be a JSON object, not a list."),
    (b'{"labels": ["person"]}', 400, 'The request has no "texts".'),
    (b'{"texts": "Ada"}', 400, '"texts" must be a list of strings, not a string.'),
    (b'{"texts": []}', 400, '"texts" is empty.'),
    (b'{"texts": ["Ada", 7]}', 400, '"texts[1]" must be a string, not a number.'),
    (b'{"texts": ["a", "b", "c", "d"]}', 413, "4 texts in one request; the limit is 3 (--max-texts)."),
    (b'{"texts": ["Ada", "0123456789A"]}', 413, '"texts[1]" has 11 characters; the limit is 10 (--max-chars).'),
    (b'{"texts": ["Ada"], "text": "Ada"}', 400, 'Unknown field "text" in the request.'),
    (b'{"texts": ["Ada"], "labels": ["person", "Person"]}', 400,
     '"labels": duplicate label "Person" (same as "person" but for case or spacing).'),
    (b'{"texts": ["Ada"], "labels": "person"}', 400,
     '"labels": labels must be a JSON list of names or an object of name -> description.'),
    (b'{"texts": ["Ada", "Bob"], "ids": ["x"]}', 400, '"ids" must be a list of 2 (one per text), not a list of 1.'),
    (b'{"texts": ["\\ud800"]}', 400, "\"texts[0]\" holds a lone surrogate ('\\ud800')."),
    (b'{"texts": ["' + b"a" * 200 + b'"]}', 413, "The request body is larger than 100 bytes (--max-body-bytes)."),
]  # fmt: skip


@needs_extra
@pytest.mark.parametrize(("body", "status", "error"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_requests_get_a_json_error_and_the_service_goes_on(client_for, body: bytes, status: int, error: str):
    recognizer = FakeRecognizer()
    client = client_for(service(recognizer, max_texts=3, max_chars=10, max_body_bytes=100))
    answer = client.post("/extract", content=body)
    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert recognizer.windows == []  # refused before any batch
    good = client.post("/extract", json={"texts": ["Ada"]})
    assert good.json() == {"records": [record("0", "Ada", {**ADA})]}


@needs_extra
def test_no_labels_where_the_model_brings_none_is_a_400(client_for) -> None:
    client = client_for(service(labels=None))
    answer = client.post("/extract", json={"texts": [TEXT]})
    assert answer.status_code == 400
    assert answer.json()["error"] == "No labels given, and the model brings none."


class FakeTagger(FakeRecognizer):
    """A recognizer that brings its labels and selects among them by name, as a tagger does."""

    kind = "tagger"

    def labels(self) -> LabelSet | None:
        return LabelSet(("person", "location", "organization"))


@needs_extra
def test_a_tagger_refuses_labels_it_does_not_know(client_for) -> None:
    client = client_for(service(FakeTagger(), labels=None))
    unknown = client.post("/extract", json={"texts": [TEXT], "labels": ["person", "city", "date"]})
    assert unknown.status_code == 400
    assert unknown.json() == {"error": "This tagger does not know the labels `city`, `date`.",
                              "hint": "Its labels are: person, location, organization."}  # fmt: skip
    described = client.post("/extract", json={"texts": [TEXT], "labels": {"person": "a human being"}})
    assert described.status_code == 400
    assert described.json()["error"] == "This model is a tagger: it selects labels by name, without descriptions."
    # its own labels when the request gives none; a subset by name
    assert client.post("/extract", json={"texts": [TEXT]}).json() == {"records": [record("0", TEXT, ADA, ACME, PARIS)]}
    assert client.post("/extract", json={"texts": [TEXT], "labels": ["location"]}).json() == {
        "records": [record("0", TEXT, PARIS)]
    }
    assert client.get("/info").json()["labels"] == ["person", "location", "organization"]


# -- batching ------------------------------------------------------------------------------------------------------


@needs_extra
def test_requests_arriving_together_share_one_window_and_get_their_own_records(client_for) -> None:
    recognizer = FakeRecognizer()
    # the first request waits up to 5 s for others; the batch closes as soon as it holds all 6 texts
    client = client_for(service(recognizer, batch_wait_ms=5000, max_batch_texts=6))
    asks = [["person"], ["location"], ["organization"], ["person", "location"], None, ["organization", "person"]]

    def call(i: int) -> Callable[[], Any]:
        body: dict[str, object] = {"texts": [TEXT], "ids": [f"r{i}"]}
        if asks[i] is not None:
            body["labels"] = asks[i]
        return lambda: client.post("/extract", json=body).json()

    answers = fire([call(i) for i in range(6)])
    assert recognizer.windows == [6]
    assert answers == [
        {"records": [record("r0", TEXT, ADA)]},
        {"records": [record("r1", TEXT, PARIS)]},
        {"records": [record("r2", TEXT, ACME)]},
        {"records": [record("r3", TEXT, ADA, PARIS)]},
        {"records": [record("r4", TEXT, ADA, PARIS)]},  # the service's labels
        {"records": [record("r5", TEXT, ADA, ACME)]},
    ]


def test_a_batch_closes_at_max_batch_texts_and_the_next_request_opens_the_next() -> None:
    recognizer = FakeRecognizer()
    docs = [Document(str(i), f"Ada {i}") for i in range(8)]
    with Batcher(recognizer, Task.of(LabelSet(("person",))), wait=5.0, max_texts=4) as batcher:
        futures = [batcher.submit(docs[:3]), batcher.submit(docs[3:4]), batcher.submit(docs[4:8])]
        results = [[r.id for r in future.result(timeout=10)] for future in futures]
    assert results == [["0", "1", "2"], ["3"], ["4", "5", "6", "7"]]
    assert recognizer.windows == [4, 4]  # 3 + 1, then 4; each batch closed when full, without waiting 5 s
    assert (batcher.counts.requests, batcher.counts.batches, batcher.counts.documents) == (3, 2, 8)


class Picky(FakeRecognizer):
    """Refuses a window holding the text "BOOM" (as a recognizer refuses what it cannot do); "CRASH" is a bug."""

    def recognize(
        self, window: Sequence[Document], task: Task, stats: RunStats, progress: ProgressHook | None = None
    ) -> Iterator[Record]:
        if any(d.text == "CRASH" for d in window):
            raise ZeroDivisionError("division by zero")
        if any(d.text == "BOOM" for d in window):
            self.windows.append(len(window))
            raise UsageError("BOOM cannot be read.", "Send another text.")
        yield from super().recognize(window, task, stats, progress)


@needs_extra
def test_a_request_the_recognizer_refuses_fails_alone(client_for) -> None:
    recognizer = Picky()
    client = client_for(service(recognizer, batch_wait_ms=5000, max_batch_texts=3))
    answers = fire([lambda t=t: client.post("/extract", json={"texts": [t]}) for t in ("Ada", "BOOM", "Paris")])
    assert [a.status_code for a in answers] == [200, 400, 200]
    assert answers[0].json() == {"records": [record("0", "Ada", ADA)]}
    assert answers[1].json() == {"error": "BOOM cannot be read.", "hint": "Send another text."}
    assert answers[2].json() == {"records": [record("0", "Paris", {**PARIS, "start": 0, "end": 5})]}
    assert recognizer.windows == [3, 1, 1, 1]  # the batch, then each of its requests on its own
    crash = client.post("/extract", json={"texts": ["CRASH", "Ada", "Ada"]})  # 3 texts: a full batch, no wait
    assert crash.status_code == 500
    assert crash.json() == {"error": "Internal error (ZeroDivisionError); see the service's log."}
    assert client.get("/health").json() == {"status": "ok"}
    assert client.post("/extract", json={"texts": ["Ada", "Ada", "Ada"]}).status_code == 200


# -- the command ---------------------------------------------------------------------------------------------------


@needs_extra
def test_serve_command_binds_loads_and_prints_the_url(fake_model, monkeypatch) -> None:
    from starlette.testclient import TestClient

    from b2ner_cli.serve import server

    served: list[Any] = []
    monkeypatch.setattr(server.HttpServer, "serve", lambda self: served.append(self))
    result = cli("serve", "-m", fake_model, "-l", "person,organization", "--port", "0", "--max-texts", "2", "-q")
    assert result.exit_code == 0, result.output
    match = re.fullmatch(r"Serving http://127\.0\.0\.1:(\d+) \(POST /extract, GET /health, GET /info\); "
                         r"Ctrl-C stops\.\n", result.stdout)  # fmt: skip
    assert match and int(match.group(1)) > 0
    assert result.stderr == ""
    (http,) = served
    assert http.socket.getsockname()[1] == int(match.group(1))
    http.socket.close()
    with TestClient(http._server.config.app) as client:
        assert client.post("/extract", json={"texts": [TEXT]}).json() == {"records": [record("0", TEXT, ADA, ACME)]}
        assert client.post("/extract", json={"texts": ["a", "b", "c"]}).status_code == 413
        assert client.get("/info").json()["labels"] == ["person", "organization"]


@needs_extra
def test_serve_reports_a_port_in_use(fake_model) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "-m", fake_model, "--port", str(port))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: Port {port} on 127.0.0.1 is in use.\nHint: Pick another with --port")


def test_of_two_services_bound_to_one_port_the_second_to_listen_is_refused() -> None:
    from b2ner_cli.serve.listen import ListenError, bind, listen

    first = bind("127.0.0.1", 0)  # both bind (SO_REUSEADDR) while their models load; the first to listen wins
    port = first.getsockname()[1]
    second = bind("127.0.0.1", port)
    listen(first)
    with pytest.raises(ListenError, match=rf"^Port {port} on 127\.0\.0\.1 is in use\.$"):
        listen(second)
    assert second.fileno() == -1  # closed
    first.close()


def test_serve_without_the_extra_says_how_to_install_it(fake_model, monkeypatch) -> None:
    for name in ("starlette", "uvicorn"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it fails as if it were not installed
    result = cli("serve", "-m", fake_model, "-l", "person")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: b2ner serve needs the serve extra (starlette is not installed).\n"
        "Hint: Install it: pip install 'b2ner[serve]'\n"
    )


SERVE_FAKE = """
import sys
sys.path.insert(0, {tests!r})
from fakes import FakeRecognizer
from b2ner_cli.runs.recognizer import register_recognizer
register_recognizer("fake", lambda spec, options: FakeRecognizer(), matches=lambda spec: spec.model == "fake")
from b2ner_cli.cli.app import main
sys.argv = ["b2ner", "serve", "-m", "fake", "-l", "person", "--port", "0"]
main()
"""


@needs_extra
def test_ctrl_c_stops_the_service_cleanly() -> None:
    code = SERVE_FAKE.format(tests=str(Path(__file__).parent))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, preexec_fn=interruptible)  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.match(r"Serving (http://127\.0\.0\.1:\d+) ", line)
        assert url, line + (process.stderr.read() if process.stderr else "")
        assert post(url.group(1) + "/extract", {"texts": ["Ada"]}) == (200, {"records": [record("0", "Ada", ADA)]})
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 130
    assert out == ""
    assert err == "Interrupted.\n"


# -- a real server and a real model --------------------------------------------------------------------------------


def post(url: str, body: object) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


EN = ["Barack Obama visited Microsoft in Seattle .", "It rained all day .", "Paris is big and Paris is old .",
      "Ada met Bob ."]  # fmt: skip
ZH = ["李明昨天去了北京。"]
EN_LABELS = ["person", "organization", "location"]
ZH_LABELS = ["人名", "地名"]


@needs_extra
def test_a_real_server_answers_as_extract_writes(tiny, tmp_path: Path) -> None:
    from b2ner_cli.models.spec import ModelSpec
    from b2ner_cli.serve import bind, create_app, http_server, load_service, url_of

    source = write_jsonl(tmp_path / "in.jsonl", [
        *({"id": f"en{i}", "text": t, "labels": EN_LABELS} for i, t in enumerate(EN)),
        *({"id": f"zh{i}", "text": t, "labels": ZH_LABELS} for i, t in enumerate(ZH)),
    ])  # fmt: skip
    out = tmp_path / "out.jsonl"
    model = ["-m", str(tiny.base), "--adapter", str(tiny.adapter)]
    result = cli("extract", str(source), *model, "--keep-raw", "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    expected = read_jsonl(out)
    assert [len(r["entities"]) for r in expected] == [3, 0, 2, 2, 2]  # the taught answers (see test_extract_cli)

    # the first request waits up to 5 s for others; the batch closes when it holds the 5 texts of both
    settings = ServeSettings(keep_raw=True, batch_wait_ms=5000, max_batch_texts=5)
    svc = load_service(ModelSpec(str(tiny.base), str(tiny.adapter)), Task.of(None), settings, quiet=True)
    sock = bind("127.0.0.1", 0)
    server = http_server(create_app(svc), sock)
    url = url_of(sock)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        ids = [f"en{i}" for i in range(len(EN))]
        en, zh = fire([lambda: post(url + "/extract", {"texts": EN, "labels": EN_LABELS, "ids": ids}),
                       lambda: post(url + "/extract", {"texts": ZH, "labels": ZH_LABELS, "ids": ["zh0"]})])  # fmt: skip
        assert en == (200, {"records": expected[:4]})
        assert zh == (200, {"records": expected[4:]})
        assert (svc.batcher.counts.requests, svc.batcher.counts.batches) == (2, 1)  # one batch, two label sets
        assert post(url + "/extract", {"texts": EN}) == (400, {
            "error": "No labels given, and the model brings none.",
            "hint": 'Send e.g. {"texts": ["Ada Lovelace was born in London."], "labels": ["person", "location"]}.',
        })  # fmt: skip
        with urllib.request.urlopen(url + "/info", timeout=10) as response:
            info = json.loads(response.read())
        assert (info["model"], info["adapter"]) == (str(tiny.base), str(tiny.adapter))
    finally:
        server.stop()
        thread.join(timeout=20)
    assert not thread.is_alive()


# "Bob Stone lives in Berlin ." and "Carol likes Oslo ." are training sentences of the session's tagger (see
# test_taggers_cli): Bob Stone 0-9 person, Berlin 19-25 location; Carol 0-5 person, Oslo 12-16 location.
BOB, CAROL = "Bob Stone lives in Berlin .", "Carol likes Oslo ."


@needs_extra
def test_a_tagger_served_answers_as_extract_writes(tagger, monkeypatch, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from b2ner_cli.serve import server

    source = write_jsonl(tmp_path / "in.jsonl", [
        {"id": "0", "text": BOB}, {"id": "1", "text": CAROL}, {"id": "0", "text": CAROL, "labels": ["location"]},
    ])  # fmt: skip
    out = tmp_path / "out.jsonl"
    assert cli("extract", str(source), "-m", str(tagger.path), "-o", str(out), "-q").exit_code == 0
    expected = read_jsonl(out)
    spans = [[(e["start"], e["end"], e["label"]) for e in r["entities"]] for r in expected]
    assert spans == [[(0, 9, "person"), (19, 25, "location")], [(0, 5, "person"), (12, 16, "location")],
                     [(12, 16, "location")]]  # fmt: skip

    served: list[Any] = []
    monkeypatch.setattr(server.HttpServer, "serve", lambda self: served.append(self))
    result = cli("serve", "-m", str(tagger.path), "--port", "0", "--batch-wait-ms", "5000", "--max-batch-texts", "3")
    assert result.exit_code == 0, result.output
    served[0].socket.close()
    with TestClient(served[0]._server.config.app) as client:
        both, located = fire(
            [
                lambda: client.post("/extract", json={"texts": [BOB, CAROL]}).json(),
                lambda: client.post("/extract", json={"texts": [CAROL], "labels": ["location"]}).json(),
            ]
        )
        assert both == {"records": expected[:2]}  # the tagger's own labels
        assert located == {"records": expected[2:]}
        assert client.app.state.service.batcher.counts.batches == 1  # one batch, two label sets
        unknown = client.post("/extract", json={"texts": [BOB], "labels": ["person", "city"]})
        assert unknown.status_code == 400
        assert unknown.json() == {"error": "This tagger does not know the label `city`.",
                                  "hint": "Its labels are: location, person."}  # fmt: skip
        info = client.get("/info").json()
        assert (info["recognizer"], info["model"], info["labels"]) == (
            "tagger",
            str(tagger.path),
            ["location", "person"],
        )
    refused = cli("serve", "-m", str(tagger.path), "--lang", "en", "--port", "0")
    assert refused.exit_code == 2
    assert refused.stderr.startswith("Error: --lang cannot be used with a tagger")

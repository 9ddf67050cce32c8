"""Runs on Ray (``extract --ray``): the input as a Ray Dataset of windows, extracted by an actor pool.

The driver (this process) reads the input as every run does (ids, ``--resume``, ``--demos``) and cuts it into the
windows that :mod:`b2ner_cli.runs.distributed` uses (``--window`` documents, numbered in input order). Each window
is one row of a Ray Dataset (``ray.data.from_items``: its documents as JSON); ``map_batches`` sends the rows, one
window per call, to a fixed pool of actors (:class:`Replica`), each of which loads one model replica from the
:class:`ModelSpec` through :func:`load_recognizer` (one GPU per actor when the cluster has GPUs, else CPU). Ray
Data keeps the rows in input order (``preserve_order``); the driver checks it, window by window, and hands the
records to the run layer, which writes them (``-o`` atomically, or stdout) and the run metadata, with a ``ray``
block: the pool size, GPUs per actor and records per actor.

A lost worker (a crashed actor process, a lost node) costs a retry, not the run: Ray Data creates its actors with
``max_restarts=-1`` and ``max_task_retries=-1`` (restart the actor, send the window again). A user error in an actor
(a model that does not load, an adapter that does not fit) comes back as a row and stops the run with that error.

Every node needs b2ner (with the ``ray`` extra) installed, and the model readable: a Hub id (each node downloads it
into its own cache) or a path on a filesystem that every node shares. A recognizer registered in the driver
(:func:`register_recognizer`, a plugin) is registered in each actor too; its module must be importable there.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from .. import errors
from ..errors import B2nerError, UsageError
from ..io.readers import Document
from ..models.spec import ModelSpec
from ..prompts import Example, LabelSet
from ..records import Record
from .distributed import windows
from .recognizer import LoadOptions, Registration, load_recognizer, registration
from .run import RaySpec, RunSpec, prepare
from .settings import RunStats

INSTALL_HINT = "Install it with: pip install 'b2ner[ray]'"


def import_ray() -> Any:
    """``ray`` with Ray Data, or a usage error that says how to install it."""
    try:
        import ray
        import ray.data  # Ray Data needs pyarrow and pandas: the extra brings them
    except ImportError as error:
        raise UsageError(f"--ray needs Ray with Ray Data, which is not installed ({error}).", INSTALL_HINT) from None
    import warnings

    # Fewer windows than actors is normal for a small input; Ray Data warns about it on stderr at every such run.
    warnings.filterwarnings("ignore", message="The minimum number of concurrent actors", category=UserWarning)
    return ray


# -- rows: documents in, records out (JSON strings: plain Arrow columns on the way) ---------------------------------


def encode_documents(window: list[Document]) -> str:
    return json.dumps(
        [
            {
                "id": d.id,
                "text": d.text,
                "labels": None if d.labels is None else [list(d.labels.names), _list(d.labels.descriptions)],
                "source": d.source,
                "examples": None if d.examples is None else [[e.text, e.answer] for e in d.examples],
            }
            for d in window
        ],
        ensure_ascii=False,
    )


def _list(items: tuple[str, ...] | None) -> list[str] | None:
    return None if items is None else list(items)


def decode_documents(data: str) -> list[Document]:
    documents = []
    for item in json.loads(data):
        labels = None
        if item["labels"] is not None:
            names, descriptions = item["labels"]
            labels = LabelSet(tuple(names), None if descriptions is None else tuple(descriptions))
        examples = None if item["examples"] is None else tuple(Example(t, a) for t, a in item["examples"])
        documents.append(Document(item["id"], item["text"], labels, item["source"], examples))
    return documents


def _error_row(error: B2nerError) -> str:
    return json.dumps({"type": type(error).__name__, "message": error.message, "hint": error.hint})


def raise_error_row(data: str) -> None:
    """Raise, in the driver, the b2ner error an actor reported (as its own class when b2ner has it)."""
    item = json.loads(data)
    kind = getattr(errors, item["type"], None)
    if not (isinstance(kind, type) and issubclass(kind, B2nerError)):
        kind = B2nerError
    raise kind(item["message"], item["hint"])


class Replica:
    """One actor of the pool: loads its model replica once, then extracts one window per call."""

    def __init__(self, run: RunSpec, model: ModelSpec, loads: Registration) -> None:
        import ray

        self.actor = ray.get_runtime_context().get_actor_id()
        self.error: str | None = None
        try:
            loads.register()  # a plugin registered in the driver is registered here too
            self.recognizer = load_recognizer(model, LoadOptions(quiet=True))
            self.task = prepare(run, self.recognizer)
            self.described = json.dumps(self.recognizer.describe())
        except B2nerError as error:  # reported with the first window: the driver stops with it
            self.error = _error_row(error)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {k: [] for k in ("window", "records", "stats", "actor", "described", "error")}
        for number, documents in zip(batch["window"], batch["documents"], strict=True):
            records: list[dict[str, object]] = []
            stats = RunStats()
            error = self.error
            if error is None:
                try:
                    for record in self.recognizer.recognize(decode_documents(str(documents)), self.task, stats):
                        records.append(record.to_dict(keep_raw=True))
                except B2nerError as failure:
                    error = _error_row(failure)
            out["window"].append(int(number))
            out["records"].append(json.dumps(records, ensure_ascii=False))
            out["stats"].append(json.dumps(stats.to_dict()))
            out["actor"].append(self.actor)
            out["described"].append("" if error is not None else self.described)
            out["error"].append(error or "")
        return out


# -- the driver -----------------------------------------------------------------------------------------------------


def _debug() -> bool:
    return os.environ.get("B2NER_DEBUG", "") not in ("", "0", "false", "no")


def connect(ray: Any, address: str | None) -> bool:
    """Join Ray (or start a local one); True when this run started it, so that it stops it too."""
    if ray.is_initialized():  # a program that embeds the run joined already
        return False
    quiet = not _debug()
    where = address or os.environ.get("RAY_ADDRESS") or "a new local Ray"
    try:
        ray.init(address=address, logging_level=logging.ERROR if quiet else logging.INFO, log_to_driver=not quiet)
    except ConnectionError as error:
        raise UsageError(
            f"Cannot reach Ray at {where}: {error}",
            "Start the cluster first (`ray start --head`), or drop --ray-address to start a local Ray.",
        ) from None
    except ValueError as error:  # e.g. a ray:// address without Ray Client installed
        raise UsageError(f"Cannot connect to Ray at {where}: {error}", INSTALL_HINT) from None
    if quiet:
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its per-run INFO lines and notices
    return True


@contextmanager
def stdout_for_records() -> Iterator[None]:
    """Ray's driver prints its workers' failures (``(raylet) A worker died ...``) on ``sys.stdout``; while the run
    lasts they go to stderr, so that stdout carries records only (the run's sink took its stream before)."""
    saved = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = saved


@contextmanager
def data_context(ray: Any) -> Iterator[None]:
    """Rows in input order, no Ray Data progress bars (the run shows its own); the caller's settings come back."""
    context = ray.data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    try:
        yield
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved


def pool_size(ray: Any, spec: RaySpec, device: str) -> tuple[int, int]:
    """(actors, GPUs per actor): one GPU each when the cluster has GPUs (and the run is not ``--device cpu``)."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    per_actor = 1 if device != "cpu" and gpus > 0 else 0
    actors = spec.actors if spec.actors is not None else max(1, gpus if per_actor else 1)
    return actors, per_actor


def ray_records(
    run: RunSpec,
    documents: Iterable[Document],
    stats: RunStats,
    described: dict[str, object],
    block: dict[str, object],
) -> Iterator[Record]:
    """The records of ``run`` (a :class:`RunSpec` with ``ray`` set) for ``documents``, in input order; ``stats``,
    ``described`` and ``block`` (the metadata's ``ray`` block) are filled as rows come back."""
    spec = run.ray
    assert spec is not None
    ray = import_ray()
    with stdout_for_records():
        yield from _run(ray, run, spec, documents, stats, described, block)


def _run(ray: Any, run: RunSpec, spec: RaySpec, documents: Iterable[Document], stats: RunStats,
         described: dict[str, object], block: dict[str, object]) -> Iterator[Record]:  # fmt: skip
    started = connect(ray, spec.address)
    try:
        actors, per_actor = pool_size(ray, spec, run.model.device)
        counts: dict[str, int] = {}
        block.update(address=spec.address or os.environ.get("RAY_ADDRESS") or None, actors=actors,
                     gpus_per_actor=per_actor, records_per_actor=[])  # fmt: skip
        items = [
            {"window": number, "documents": encode_documents(window)}
            for number, window in windows(iter(documents), run.task.settings.window)
        ]
        if not items:
            return
        model = replace(run.model, device="cuda" if per_actor else "cpu")  # the actor's own GPU is its cuda:0
        with data_context(ray):
            dataset = ray.data.from_items(items).map_batches(
                Replica,
                fn_constructor_kwargs={"run": run, "model": model, "loads": registration(run.model)},
                batch_size=1,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_gpus=per_actor,
            )
            for expected, row in enumerate(dataset.iter_rows()):
                if row["error"]:
                    raise_error_row(row["error"])
                if int(row["window"]) != expected:  # preserve_order holds this; a Ray that did not would show here
                    raise RuntimeError(f"Ray returned window {row['window']} where window {expected} was due.")
                if not described:
                    described.update(json.loads(row["described"]))
                stats.add(RunStats(**json.loads(row["stats"])))
                records = json.loads(row["records"])
                counts[row["actor"]] = counts.get(row["actor"], 0) + len(records)
                block["records_per_actor"] = list(counts.values())
                for record in records:
                    yield Record.from_dict(record)
    finally:
        if started:
            ray.shutdown()

"""Training a tagger: AdamW with encoder and head learning rates, warmup then linear decay, dev-F1 selection,
early stopping, per-epoch checkpoints (safetensors + JSON, never pickle) and an atomic output directory.

The run builds everything in ``.<output>.partial`` next to the output; it holds the checkpoint that
``resume=True`` continues from, and is renamed to ``output`` (replacing an existing one) once training is done.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import InputError, LabelError, ModelError, UsageError
from ..io.writers import write_json_atomic
from .card import CARD, FORMAT, FORMAT_VERSION, METRICS, move_into_place, partial_dir
from .scoring import strict_f1
from .types import SPAN_HEADS, TaggerExample, TaggerTrainResult, TaggerTrainSettings

CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"
BEST = "best.safetensors"


def examples_hash(examples: Sequence[TaggerExample]) -> str:
    rows = [[e.text, [list(x) for x in e.entities]] for e in examples]
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode("utf-8")).hexdigest()


def resolve_labels(train: Sequence[TaggerExample], labels: Sequence[str] | None) -> tuple[str, ...]:
    if labels is None:
        found = sorted({label for e in train for _, _, label in e.entities})
        if not found:
            raise LabelError("The training examples have no entities, so there are no labels to learn.",
                             "Pass labels explicitly, or training data with entities.")  # fmt: skip
        return tuple(found)
    chosen = tuple(labels)
    if not chosen:
        raise LabelError("The tagger label set is empty.", "Pass at least one label.")
    duplicates = sorted({x for x in chosen if chosen.count(x) > 1})
    if duplicates:
        raise LabelError(f"Duplicated tagger label{'s' if len(duplicates) > 1 else ''}: {', '.join(duplicates)}.")
    return chosen


def check_examples(examples: Sequence[TaggerExample], where: str) -> None:
    for n, example in enumerate(examples):
        for start, end, label in example.entities:
            if not (0 <= start < end <= len(example.text)) or not label:
                raise InputError(
                    f"{where} example {n + 1} has an entity ({start}, {end}, {label!r}) outside its text "
                    f"of {len(example.text)} characters.",
                    "Entities are (start, end, label) character offsets with end exclusive.",
                )


def lr_factor(step: int, total: int, warmup_ratio: float) -> float:
    """Linear warmup over the first ``warmup_ratio`` of the steps, then linear decay to 0."""
    warmup = int(total * warmup_ratio)
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _random_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _set_random_state(state: list[Any]) -> None:
    random.setstate((state[0], tuple(state[1]), state[2]))


def _check_resume(state: dict[str, Any], expected: dict[str, Any]) -> None:
    for key in ("encoder", "labels", "data"):
        old, new = state.get(key), expected[key]
        if key == "data":
            for name in sorted(set(old or {}) | set(new)):
                if (old or {}).get(name) != new.get(name):
                    raise UsageError(
                        f"Cannot resume: the data fingerprint `{name}` differs from the interrupted run's.",
                        "Resume with the same data, or start over without --resume.",
                    )
        elif old != new:
            raise UsageError(
                f"Cannot resume: `{key}` was {old!r} in the interrupted run and is {new!r} now.",
                "Resume with the same arguments, or start over without --resume.",
            )
    old_settings = state.get("settings", {})
    for name, value in expected["settings"].items():
        if old_settings.get(name) != value:
            raise UsageError(
                f"Cannot resume: setting `{name}` was {old_settings.get(name)!r} in the interrupted run and is "
                f"{value!r} now.",
                "Resume with the same settings, or start over without --resume.",
            )


def train_tagger(
    encoder: str,
    train: Sequence[TaggerExample],
    output: Path,
    settings: TaggerTrainSettings,
    *,
    dev: Sequence[TaggerExample] = (),
    labels: Sequence[str] | None = None,
    offline: bool = False,
    revision: str | None = None,
    resume: bool = False,
    device: str = "auto",
    on_step: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    data_fingerprint: dict[str, Any] | None = None,
) -> TaggerTrainResult:
    """Fine-tune ``encoder`` (a directory or Hub id) with a ``settings.head`` head and write a tagger to ``output``.

    ``on_step`` gets {"epoch", "step", "total_steps", "loss", "lr"} after every optimizer step; ``on_epoch`` the
    epoch's metrics line after its checkpoint is written. Gold entities that do not align to word boundaries
    (or that a head cannot represent) are skipped and counted in ``result.skipped``.
    """
    settings.check()
    if not train:
        raise InputError("There are no training examples.", "Pass a training file with at least one example.")
    check_examples(train, "Training")
    check_examples(dev, "Dev")
    label_list = resolve_labels(train, labels)
    fingerprint = {"train": examples_hash(train), "dev": examples_hash(dev), **(data_fingerprint or {})}
    output = Path(output).expanduser()
    work = partial_dir(output)
    expected = {"encoder": encoder, "labels": list(label_list), "data": fingerprint, "settings": settings.to_dict()}
    state: dict[str, Any] | None = None
    if resume:
        path = work / CHECKPOINT_STATE
        if not path.is_file():
            raise UsageError(f"There is no interrupted tagger training for `{output}` to resume.",
                             "Run the same command without --resume.")  # fmt: skip
        state = json.loads(path.read_text(encoding="utf-8"))
        _check_resume(state, expected)
    elif work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    return _train(encoder, train, dev, output, work, settings, label_list, fingerprint, expected, state,
                  offline=offline, revision=revision, device=device, on_step=on_step, on_epoch=on_epoch)  # fmt: skip


def _train(
    encoder_ref: str,
    train: Sequence[TaggerExample],
    dev: Sequence[TaggerExample],
    output: Path,
    work: Path,
    settings: TaggerTrainSettings,
    labels: tuple[str, ...],
    fingerprint: dict[str, Any],
    expected: dict[str, Any],
    state: dict[str, Any] | None,
    *,
    offline: bool,
    revision: str | None,
    device: str,
    on_step: Callable[[dict[str, Any]], None] | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> TaggerTrainResult:
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel, AutoTokenizer

    from ..models.loading import quiet_library_logs
    from ..models.resolve import locate
    from .heads import build_head
    from .runtime import TaggerModule, autocast, collate, pick_device, run_windows, to_spans
    from .tagger import _dropout, _pad_id, write_files
    from .words import attach_entities, make_windows

    quiet_library_logs()  # the core never prints: no transformers progress bars or load reports on stderr
    began = time.monotonic()
    source = locate(encoder_ref, revision, kind="model", display=encoder_ref, offline=offline)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"Encoder `{encoder_ref}` has no loadable tokenizer ({exc}).") from None
    random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    try:
        encoder = AutoModel.from_pretrained(source.path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"Encoder `{encoder_ref}` cannot be loaded ({exc}).") from None
    head: Any = build_head(settings.head, encoder.config.hidden_size, len(labels), settings, _dropout(encoder.config))
    target = pick_device(device)
    module = TaggerModule(encoder, head).to(target)
    pad_id = _pad_id(tokenizer)

    label_ids = {label: i + 1 for i, label in enumerate(labels)}
    windows = make_windows(tokenizer, [e.text for e in train], settings.max_length)
    skipped = attach_entities(windows, [e.entities for e in train], label_ids)
    skipped.update(fit_to_head(windows, settings))
    windows = [w for w in windows if w.words]
    if not windows:
        raise InputError("No training example has any word the encoder's tokenizer can represent.")
    dev_windows = make_windows(tokenizer, [e.text for e in dev], settings.max_length) if dev else []

    decay: list[Any] = []
    no_decay: list[Any] = []
    head_decay: list[Any] = []
    head_no_decay: list[Any] = []
    for name, param in module.named_parameters():
        is_head = name.startswith("head.")
        plain = param.ndim < 2 or "norm" in name.lower()
        (head_no_decay if is_head and plain else head_decay if is_head else no_decay if plain else decay).append(param)
    enc_lr, head_lr, wd = settings.encoder_lr, settings.head_lr, settings.weight_decay
    groups = [
        {"params": decay, "lr": enc_lr, "weight_decay": wd, "base_lr": enc_lr},
        {"params": no_decay, "lr": enc_lr, "weight_decay": 0.0, "base_lr": enc_lr},
        {"params": head_decay, "lr": head_lr, "weight_decay": wd, "base_lr": head_lr},
        {"params": head_no_decay, "lr": head_lr, "weight_decay": 0.0, "base_lr": head_lr},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]])
    per_epoch = math.ceil(len(windows) / settings.batch_size)
    total = per_epoch * settings.epochs

    metrics: list[dict[str, Any]] = []
    first_epoch, step, best_epoch, best_f1 = 0, 0, 0, -1.0
    if state is not None:
        tensors = load_file(str(work / CHECKPOINT_TENSORS))
        module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        _load_optimizer(optimizer, tensors)
        first_epoch, step = int(state["epoch"]), int(state["step"])
        best_epoch, best_f1 = int(state["best_epoch"]), float(state["best_f1"])
        metrics = list(state["metrics"])
        _set_random_state(state["rng"]["python"])
        torch.set_rng_state(torch.tensor(state["rng"]["torch"], dtype=torch.uint8))
        if torch.cuda.is_available() and state["rng"].get("cuda"):
            torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["rng"]["cuda"]])

    stopped_early = False
    for epoch in range(first_epoch, settings.epochs):
        if settings.patience is not None and dev and epoch - best_epoch >= settings.patience and epoch > 0:
            stopped_early = True
            break
        started = time.monotonic()
        module.train()
        order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(settings.seed + epoch)).tolist()
        losses = []
        for at in range(0, len(order), settings.batch_size):
            chosen = [windows[i] for i in order[at : at + settings.batch_size]]
            batch = collate(chosen, pad_id, target)
            gold = head.targets([w.entities for w in chosen], batch["word_mask"].shape[1])
            targets = {k: v.to(target) for k, v in gold.items()}
            factor = lr_factor(step, total, settings.warmup_ratio)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            with autocast(target):
                out = module(batch, targets=targets)
                loss = head.loss(out, targets, epoch)
            loss.backward()
            if settings.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(module.parameters(), settings.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step({"epoch": epoch + 1, "step": step, "total_steps": total, "loss": losses[-1],
                         "lr": settings.head_lr * factor})  # fmt: skip
        record: dict[str, Any] = {"epoch": epoch + 1, "step": step, "loss": sum(losses) / max(1, len(losses))}
        if dev:
            decoded = run_windows(module, dev_windows, pad_id=pad_id, device=target)
            spans = to_spans(dev_windows, decoded, labels, len(dev))
            score = strict_f1([e.entities for e in dev], [[(s.start, s.end, s.label) for s in doc] for doc in spans])
            record.update({"dev_f1": score["f1"], "dev_precision": score["precision"], "dev_recall": score["recall"]})
            if score["f1"] > best_f1:
                best_f1, best_epoch = score["f1"], epoch + 1
                save_file(_model_tensors(module), str(work / BEST))
        else:
            best_epoch = epoch + 1
        record["seconds"] = round(time.monotonic() - started, 3)
        metrics.append(record)
        _write_metrics(work / METRICS, metrics)
        tensors = _model_tensors(module)
        tensors.update(_optimizer_tensors(optimizer))
        save_file(tensors, str(work / CHECKPOINT_TENSORS))
        rng: dict[str, Any] = {"python": _random_state(), "torch": torch.get_rng_state().tolist()}
        if torch.cuda.is_available():
            rng["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
        checkpoint = {**expected, "epoch": epoch + 1, "step": step, "best_epoch": best_epoch, "best_f1": best_f1,
                      "metrics": metrics, "rng": rng}  # fmt: skip
        write_json_atomic(work / CHECKPOINT_STATE, checkpoint)
        if on_epoch is not None:
            on_epoch(dict(record))

    if dev and (work / BEST).is_file() and best_epoch != len(metrics):
        module.load_state_dict({k[6:]: v for k, v in load_file(str(work / BEST)).items()})
    write_files(work, encoder, tokenizer, head)
    card = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "encoder": {
            "ref": encoder_ref,
            "repo_id": source.repo_id,
            "revision": source.revision,
            "model_type": getattr(encoder.config, "model_type", None),
            "hidden_size": encoder.config.hidden_size,
        },
        "head": settings.head,
        "labels": list(labels),
        "settings": settings.to_dict(),
        "dev": {
            "per_epoch": [{"epoch": m["epoch"], "f1": m["dev_f1"]} for m in metrics if "dev_f1" in m],
            "best_epoch": best_epoch if dev else None,
            "best_f1": best_f1 if dev else None,
        },
        "data": fingerprint,
        "skipped": skipped,
        "b2ner_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for name in (CHECKPOINT_TENSORS, CHECKPOINT_STATE, BEST):
        (work / name).unlink(missing_ok=True)
    write_json_atomic(work / CARD, card)
    move_into_place(work, output)
    return TaggerTrainResult(
        output=output, head=settings.head, labels=labels, epochs_run=len(metrics), best_epoch=best_epoch,
        best_dev_f1=best_f1 if dev else None, metrics=metrics, skipped=skipped, train_windows=len(windows),
        stopped_early=stopped_early, resumed_from_epoch=int(state["epoch"]) if state else 0,
        seconds=round(time.monotonic() - began, 3),
    )  # fmt: skip


def fit_to_head(windows: Sequence[Any], settings: TaggerTrainSettings) -> dict[str, int]:
    """Drop gold entities the head cannot learn: longer than the span cap (span heads), or overlapping (crf,
    pointer, which see one entity per word)."""
    too_long = overlapping = 0
    for window in windows:
        kept: list[tuple[int, int, int]] = []
        for entity in sorted(window.entities, key=lambda e: (e[0], -e[1])):
            first, last, _ = entity
            if settings.head in SPAN_HEADS:
                if last - first + 1 > settings.max_span_words:
                    too_long += 1
                    continue
            elif any(first <= k[1] and k[0] <= last for k in kept):
                overlapping += 1
                continue
            kept.append(entity)
        window.entities = kept
    return {"too_long": too_long, "overlapping": overlapping}


def _model_tensors(module: Any) -> dict[str, Any]:
    return {f"model.{k}": v.detach().contiguous().cpu().clone() for k, v in module.state_dict().items()}


def _optimizer_tensors(optimizer: Any) -> dict[str, Any]:
    """AdamW's per-parameter state as flat tensors: optim.<param index>.<name>."""
    flat = {}
    for index, values in optimizer.state_dict()["state"].items():
        for name, value in values.items():
            flat[f"optim.{index}.{name}"] = value.detach().contiguous().cpu().clone()
    return flat


def _load_optimizer(optimizer: Any, tensors: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


def _write_metrics(path: Path, metrics: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(m) + "\n" for m in metrics), encoding="utf-8")
    tmp.replace(path)

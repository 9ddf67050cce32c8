"""The finetuning loop: length-grouped micro-batches, exact gradient accumulation, F1-based selection, resume."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import InputError, UsageError
from ..evaluation.records import GoldRecord
from ..evaluation.report import evaluate
from ..io.writers import write_json_atomic
from ..models.resolve import ADAPTER_METADATA
from .data import Sample, TrainExample, encode, epoch_samples

Note = Callable[[str], None]
CHECKPOINT = "checkpoint"


@dataclass
class TrainSettings:
    epochs: int = 5
    lr: float = 3e-4
    batch_size: int = 128  # global batch, in examples
    micro_batch_size: int = 8
    warmup_ratio: float = 0.03
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    max_length: int = 4096
    seed: int = 42
    label_dropout: float = 0.1
    replay_ratio: float = 0.0
    select: str = "b2ner"
    eval_every: int = 1  # epochs
    gradient_checkpointing: bool = False


@dataclass
class Progress:
    """What the caller shows: called after every optimizer step."""

    epoch: int = 0
    step: int = 0
    total_steps: int = 0
    loss: float = 0.0
    lr: float = 0.0
    tokens_per_second: float = 0.0


@dataclass
class TrainResult:
    best_metrics: dict[str, Any] | None
    best_epoch: int | None
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped_too_long: int = 0


def _set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def lr_at(step: int, settings: TrainSettings, total_steps: int) -> float:
    """Linear warmup over ``warmup_ratio`` of the steps, then constant (the published schedule)."""
    warmup = max(1, math.ceil(settings.warmup_ratio * total_steps))
    return settings.lr * min(1.0, (step + 1) / warmup)


def micro_batches(encoded: Sequence[tuple[list[int], list[int]]], settings: TrainSettings) -> list[list[list[int]]]:
    """Global batches (in sample order) split into length-sorted micro-batches of indices."""
    plan = []
    for start in range(0, len(encoded), settings.batch_size):
        indices = sorted(range(start, min(start + settings.batch_size, len(encoded))), key=lambda i: len(encoded[i][0]))
        plan.append(
            [indices[i : i + settings.micro_batch_size] for i in range(0, len(indices), settings.micro_batch_size)]
        )
    return plan


def _collate(rows: Sequence[tuple[list[int], list[int]]], pad_id: int, device: Any) -> dict[str, torch.Tensor]:
    """Left padding, attention mask, and position ids that follow the mask (as at inference)."""
    from ..engine.hf import left_pad

    input_ids, mask = left_pad([ids for ids, _ in rows], pad_id)
    labels, _ = left_pad([lab for _, lab in rows], -100, input_ids.shape[1])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    batch = {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions, "labels": labels}
    return {k: v.to(device) for k, v in batch.items()}


def _target_tokens(rows: Sequence[tuple[list[int], list[int]]]) -> int:
    return sum(sum(1 for t in lab if t != -100) for _, lab in rows)


def train(
    model: Any,
    tokenizer: Any,
    examples: Sequence[TrainExample],
    output: Path,
    settings: TrainSettings,
    *,
    dev: Sequence[GoldRecord] = (),
    replay: Sequence[TrainExample] = (),
    metadata: dict[str, Any] | None = None,
    resume: bool = False,
    on_step: Callable[[Progress], None] | None = None,
    note: Note | None = None,
) -> TrainResult:
    """Train the trainable (LoRA) parameters of ``model``; keep the best adapter in ``output`` by dev F1."""
    note = note or (lambda _: None)
    device = model.get_input_embeddings().weight.device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise UsageError("The model has no trainable parameters.", "Finetuning trains a LoRA adapter.")
    optimizer = torch.optim.AdamW(params, lr=settings.lr, betas=settings.betas, weight_decay=settings.weight_decay)
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    steps_per_epoch = math.ceil(len(examples) * (1 + settings.replay_ratio) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    result = TrainResult(None, None)
    start_epoch, step = 0, 0
    checkpoint = output / CHECKPOINT
    if resume:  # restores the adapter, the optimizer and the RNG state: the run continues as if never stopped
        start_epoch, step, result = _load_checkpoint(checkpoint, model, optimizer, result)
        note(f"Resuming after epoch {start_epoch} (step {step}).")
    else:
        _set_seed(settings.seed)
    progress = Progress(total_steps=total_steps)
    for epoch in range(start_epoch, settings.epochs):
        samples = _epoch_with_replay(examples, replay, settings, epoch)
        encoded = []
        for sample in samples:
            pair = encode(sample, tokenizer, settings.max_length)
            if pair is None:
                result.skipped_too_long += 1
            else:
                encoded.append(pair)
        model.train()
        for batch in micro_batches(encoded, settings):
            started = time.perf_counter()
            rows_all = [encoded[i] for micro in batch for i in micro]
            total_targets = max(_target_tokens(rows_all), 1)
            optimizer.zero_grad(set_to_none=True)
            loss_sum, tokens = 0.0, 0
            for micro in batch:
                rows = [encoded[i] for i in micro]
                inputs = _collate(rows, pad_id, device)
                labels = inputs.pop("labels")
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    logits = model(**inputs).logits
                shifted = logits[:, :-1].float().reshape(-1, logits.shape[-1])
                loss = torch.nn.functional.cross_entropy(
                    shifted, labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum"
                )
                (loss / total_targets).backward()
                loss_sum += float(loss.detach())
                tokens += int(inputs["attention_mask"].sum())
            torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
            current_lr = lr_at(step, settings, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = current_lr
            optimizer.step()
            step += 1
            progress.epoch, progress.step, progress.loss, progress.lr = (
                epoch + 1,
                step,
                loss_sum / total_targets,
                current_lr,
            )
            progress.tokens_per_second = tokens / max(time.perf_counter() - started, 1e-9)
            if on_step:
                on_step(progress)
        record: dict[str, Any] = {"epoch": epoch + 1, "step": step, "loss": progress.loss}
        last = epoch + 1 == settings.epochs
        if dev and ((epoch + 1) % settings.eval_every == 0 or last):
            record["dev"] = dev_metrics(model, tokenizer, dev, settings)
        elif dev:
            record["dev"] = None
        _append_jsonl(output / "metrics.jsonl", record)
        result.history.append(record)
        score = _score(record.get("dev"), settings.select)
        best = _score(result.best_metrics, settings.select)
        if (not dev and last) or (score is not None and (best is None or score > best)):
            result.best_metrics, result.best_epoch = record.get("dev"), epoch + 1
            _save_adapter(model, output, {**(metadata or {}), "epoch": epoch + 1, "dev_metrics": record.get("dev"),
                                          "selected_by": settings.select if dev else "last epoch"})  # fmt: skip
        _save_checkpoint(checkpoint, model, optimizer, epoch + 1, step, result)
    return result


def _epoch_with_replay(examples: Sequence[TrainExample], replay: Sequence[TrainExample], settings: TrainSettings,
                       epoch: int) -> list[Sample]:  # fmt: skip
    if not replay or settings.replay_ratio <= 0:
        return epoch_samples(examples, settings.seed, epoch, settings.label_dropout)
    rng = random.Random(f"replay:{settings.seed}:{epoch}")
    count = min(len(replay), round(len(examples) * settings.replay_ratio))
    mixed = list(examples) + rng.sample(list(replay), count)
    return epoch_samples(mixed, settings.seed, epoch, settings.label_dropout)


def _score(metrics: dict[str, Any] | None, select: str) -> float | None:
    if not metrics:
        return None
    return float(metrics[select]["f1"])


def dev_metrics(model: Any, tokenizer: Any, dev: Sequence[GoldRecord], settings: TrainSettings) -> dict[str, Any]:
    """Extract on the dev texts with their label sets and score both metrics (micro over all dev records), with the
    same run code and defaults as ``b2ner eval -m``."""
    from ..engine.hf import HFGenerator
    from ..evaluation.predict import predict_gold
    from ..models.spec import ModelSpec
    from ..pipeline import LLMRecognizer

    model.eval()
    recognizer = LLMRecognizer(HFGenerator(model, tokenizer))
    predictions = predict_gold(dev, ModelSpec(), recognizer=recognizer)
    single = [GoldRecord(r.id, r.text, r.entities, r.labels, "dev", r.language, r.source) for r in dev]
    [report] = evaluate(single, predictions).datasets
    model.train()
    return {"b2ner": report.b2ner.to_dict(), "strict": {**report.strict.to_dict(), "macro_f1": report.strict_macro_f1}}  # type: ignore[union-attr]


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(json.dumps(record, ensure_ascii=False) + "\n")


def _save_adapter(model: Any, output: Path, metadata: dict[str, Any]) -> None:
    """Write the adapter next to a temporary name and swap it in, so ``output`` always holds a whole adapter."""
    tmp = output / ".adapter-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    write_json_atomic(tmp / ADAPTER_METADATA, {"b2ner_version": __version__, **metadata})
    for item in tmp.iterdir():
        os.replace(item, output / item.name)
    tmp.rmdir()


def _save_checkpoint(folder: Path, model: Any, optimizer: Any, epoch: int, step: int, result: TrainResult) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp / "adapter"))
    torch.save({"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(), "epoch": epoch,
                "step": step}, tmp / "state.pt")  # fmt: skip
    write_json_atomic(tmp / "result.json", asdict(result))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def _load_checkpoint(folder: Path, model: Any, optimizer: Any, result: TrainResult) -> tuple[int, int, TrainResult]:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state_file = folder / "state.pt"
    if not state_file.is_file():
        raise UsageError(f"Nothing to resume in {folder.parent}: no checkpoint there.", "Drop --resume to start anew.")
    state = torch.load(state_file, map_location="cpu", weights_only=False)
    weights = load_file(str(folder / "adapter" / "adapter_model.safetensors"))
    set_peft_model_state_dict(model, weights)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    saved = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    return int(state["epoch"]), int(state["step"]), TrainResult(**saved)


def check_output(output: Path, overwrite: bool, resume: bool) -> None:
    if resume:
        return
    if output.exists() and any(output.iterdir()):
        if not overwrite:
            raise UsageError(
                f"Output directory {output} is not empty.",
                "Pass --overwrite to replace it, or --resume to continue the run that is there.",
            )
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)


def check_examples(examples: Sequence[TrainExample], where: str) -> None:
    if not examples:
        raise InputError(
            f"{where} holds no training examples.", "Give a JSONL or B2NERD file with annotated sentences."
        )

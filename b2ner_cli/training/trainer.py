"""The finetuning loop: length-grouped micro-batches, exact gradient accumulation, F1-based selection, resume.

The checkpoint (``<output>/checkpoint/``) holds no pickle: tensors are in safetensors files and everything else in
JSON, so resuming never runs code from a file.

- ``adapter/``: the LoRA adapter as PEFT saves it (``adapter_model.safetensors``, ``adapter_config.json``);
- ``optimizer.safetensors``: the optimizer's per-parameter state, one tensor per ``state.<param index>.<name>``
  (e.g. ``state.0.exp_avg``, ``state.0.step``);
- ``state.json``: ``format``, ``epoch``, ``step``, the optimizer's ``param_groups``, the RNG states (torch's as a
  list of byte values, Python's as lists of ints, CUDA's per device), ``config``, the run's fingerprint, and
  ``run``, the job's settings as given (model, files, labels, LoRA and training settings) that ``--resume``
  restores;
- ``result.json``: the best metrics and history so far.

``config`` fingerprints what makes a run: the base model and starting adapter, sha256 digests of the training,
dev and replay data, the labels and their descriptions, every training setting but ``epochs`` (resuming to train
longer is the point), and the LoRA settings. ``--resume`` refuses a run whose fingerprint differs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import secrets
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
CHECKPOINT_FORMAT = 1


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
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    note: Note | None = None,
    run: dict[str, Any] | None = None,
) -> TrainResult:
    """Train the trainable (LoRA) parameters of ``model``; keep the best adapter in ``output`` by dev F1.

    ``on_epoch`` receives each epoch's ``metrics.jsonl`` record; ``run`` (the job's settings, as ``--resume``
    restores them) is kept in the checkpoint.
    """
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
    output.mkdir(parents=True, exist_ok=True)
    checkpoint = output / CHECKPOINT
    config = run_config(examples, dev, replay, settings, metadata or {})
    if resume:  # restores the adapter, the optimizer and the RNG state: the run continues as if never stopped
        start_epoch, step, result = _load_checkpoint(checkpoint, model, optimizer, config)
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
        if on_epoch:
            on_epoch(record)
        score = _score(record.get("dev"), settings.select)
        best = _score(result.best_metrics, settings.select)
        if (not dev and last) or (score is not None and (best is None or score > best)):
            result.best_metrics, result.best_epoch = record.get("dev"), epoch + 1
            _save_adapter(model, output, {**(metadata or {}), "epoch": epoch + 1, "dev_metrics": record.get("dev"),
                                          "selected_by": settings.select if dev else "last epoch"})  # fmt: skip
        _save_checkpoint(checkpoint, model, optimizer, epoch + 1, step, result, config, run)
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


def _digest(items: Sequence[Any]) -> str:
    return hashlib.sha256(repr(list(items)).encode("utf-8")).hexdigest()


def run_config(examples: Sequence[TrainExample], dev: Sequence[GoldRecord], replay: Sequence[TrainExample],
               settings: TrainSettings, metadata: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The fingerprint of a run that ``--resume`` must match, in the order mismatches are reported."""
    hyper = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items() if k != "epochs"}
    return {
        "base_model": metadata.get("base_model"),
        "base_model_revision": metadata.get("base_model_revision"),
        "adapter": metadata.get("started_from_adapter"),
        "labels": metadata.get("labels"),  # before the data, whose examples carry their label sets
        "label descriptions": metadata.get("label_descriptions"),
        "train data": _digest(examples),
        "dev data": _digest(dev) if dev else None,
        "replay data": _digest(replay) if replay else None,
        **hyper,
        "lora": (metadata.get("settings") or {}).get("lora"),
    }


def _check_config(saved: dict[str, Any], current: dict[str, Any], state_file: Path) -> None:
    for key, now in current.items():
        then = saved.get(key, "<missing>")
        if then != now:
            shown = [v[:12] + "..." if isinstance(v, str) and key.endswith(" data") else v for v in (then, now)]
            raise UsageError(
                f"Cannot resume: the checkpoint in {state_file.parent.parent} was made with {key} {shown[0]!r}, "
                f"this run has {shown[1]!r}.",
                "Resume with the same data, labels, model and settings (only --epochs may change), or start anew "
                "with --overwrite.",
            )


def _rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"torch": torch.get_rng_state().tolist(), "python": [version, list(internal), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _save_checkpoint(folder: Path, model: Any, optimizer: Any, epoch: int, step: int, result: TrainResult,
                     config: dict[str, Any], run: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Build the checkpoint beside ``folder`` and swap it in (the old one is removed only once the new is there)."""
    from safetensors.torch import save_file

    tmp = folder.with_name(f".{folder.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    tmp.mkdir(parents=True)
    try:
        model.save_pretrained(str(tmp / "adapter"))
        optimizer_state = optimizer.state_dict()
        tensors = {}
        for index, values in optimizer_state["state"].items():
            for name, value in values.items():
                if not isinstance(value, torch.Tensor):
                    value = torch.tensor(value)
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in group.items()}
                  for group in optimizer_state["param_groups"]]  # fmt: skip
        state = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "step": step, "param_groups": groups,
                 "rng": _rng_state(), "config": config, "run": run}  # fmt: skip
        write_json_atomic(tmp / "state.json", state)
        write_json_atomic(tmp / "result.json", asdict(result))
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.{os.getpid()}-{secrets.token_hex(4)}.old")
            os.replace(folder, old)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class Checkpoint:
    adapter: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor]
    state: dict[str, Any]
    result: dict[str, Any]


def _damaged(path: Path, why: str) -> InputError:
    return InputError(
        f"The checkpoint file {path} is damaged or incomplete: {why}.",
        "Start anew with --overwrite instead of --resume.",
    )


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise _damaged(path, "the file is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise _damaged(path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise _damaged(path, "the file is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _damaged(path, f"not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise _damaged(path, "not a JSON object")
    return data


def read_checkpoint(folder: Path) -> Checkpoint:
    """Read a checkpoint with safetensors and json only (never unpickling); a bad file is a one-line InputError."""
    if not folder.is_dir():
        raise UsageError(f"Nothing to resume in {folder.parent}: no checkpoint there.", "Drop --resume to start anew.")
    if (folder / "state.pt").exists() and not (folder / "state.json").exists():
        raise InputError(
            f"The checkpoint in {folder} has the old pickle format, which b2ner no longer loads (it can run code).",
            "Start anew with --overwrite instead of --resume.",
        )
    state = _read_json(folder / "state.json")
    required = {"format": int, "epoch": int, "step": int, "param_groups": list, "rng": dict, "config": dict}
    for key, kind in required.items():
        if not isinstance(state.get(key), kind):
            raise _damaged(folder / "state.json", f'"{key}" is missing or not a {kind.__name__}')
    if state["format"] != CHECKPOINT_FORMAT:
        raise _damaged(folder / "state.json", f"unknown format {state['format']}")
    return Checkpoint(
        adapter=_read_tensors(folder / "adapter" / "adapter_model.safetensors"),
        optimizer=_read_tensors(folder / "optimizer.safetensors"),
        state=state,
        result=_read_json(folder / "result.json"),
    )


def _load_checkpoint(folder: Path, model: Any, optimizer: Any, config: dict[str, Any]) -> tuple[int, int, TrainResult]:
    from peft import set_peft_model_state_dict

    checkpoint = read_checkpoint(folder)
    state = checkpoint.state
    _check_config(state["config"], config, folder / "state.json")
    optimizer_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in checkpoint.optimizer.items():
        _, index, name = key.split(".", 2)
        optimizer_state.setdefault(int(index), {})[name] = tensor
    groups = [{k: tuple(v) if k == "betas" else v for k, v in group.items()} for group in state["param_groups"]]
    try:
        set_peft_model_state_dict(model, checkpoint.adapter)
        optimizer.load_state_dict({"state": optimizer_state, "param_groups": groups})
        _set_rng_state(state["rng"])
        result = TrainResult(**checkpoint.result)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise _damaged(folder, f"it does not match this model ({str(exc).splitlines()[0]})") from None
    return int(state["epoch"]), int(state["step"]), result


@dataclass
class OutputPlan:
    """Where a finetuning run writes (``work``) and where its result goes (``final``).

    With ``--overwrite`` on a non-empty directory, ``work`` is a new directory beside ``final``: nothing is deleted
    before training has produced a result, and ``publish()`` swaps it in (``final`` renamed aside, ``work``
    renamed into place, the old directory removed last). Otherwise ``work`` is ``final``.
    """

    final: Path
    work: Path

    def publish(self) -> None:
        if self.work == self.final:
            return
        old = self.final.with_name(f".{self.final.name}.{os.getpid()}-{secrets.token_hex(4)}.old")
        os.replace(self.final, old)
        try:
            os.replace(self.work, self.final)
        except BaseException:
            os.replace(old, self.final)
            raise
        shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        """The run failed: drop the new directory built beside ``final`` (``final`` itself is never touched)."""
        if self.work != self.final:
            shutil.rmtree(self.work, ignore_errors=True)


def _refuse_to_replace(output: Path, inputs: Sequence[Path | None]) -> None:
    resolved = output.resolve()
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if resolved == cwd or resolved in cwd.parents:
        what = "the current directory" if resolved == cwd else "a parent of the current directory"
        raise UsageError(f"--overwrite would replace {output}, which is {what}.", "Give -o a new directory.")
    if resolved == home:
        raise UsageError(
            f"--overwrite would replace {output}, which is your home directory.", "Give -o a new directory."
        )
    for source in inputs:
        if source is not None and (resolved == source.resolve() or resolved in source.resolve().parents):
            raise UsageError(
                f"--overwrite would replace {output}, which holds the input {source}.",
                "Move the input out of it, or give -o a new directory.",
            )


def check_output(output: Path, overwrite: bool, resume: bool, inputs: Sequence[Path | None] = ()) -> OutputPlan:
    """Check ``output`` before any model loads; deletes nothing (see ``OutputPlan``).

    ``--overwrite`` on a non-empty directory is refused when the directory is the current directory or one of its
    parents, the home directory, or holds one of ``inputs`` (train, dev, replay, labels files).
    """
    if output.exists() and not output.is_dir():
        raise UsageError(f"Output {output} is a file, not a directory.", "Give -o a directory for the adapter.")
    if resume:
        return OutputPlan(output, output)
    if output.exists() and any(output.iterdir()):
        if not overwrite:
            raise UsageError(
                f"Output directory {output} is not empty.",
                "Pass --overwrite to replace it, or --resume to continue the run that is there.",
            )
        _refuse_to_replace(output, inputs)
        work = output.with_name(f".{output.name}.{os.getpid()}-{secrets.token_hex(4)}.new")
        return OutputPlan(output, work)
    return OutputPlan(output, output)


def check_examples(examples: Sequence[TrainExample], where: str) -> None:
    if not examples:
        raise InputError(
            f"{where} holds no training examples.", "Give a JSONL or B2NERD file with annotated sentences."
        )

"""Getting a model ready to load: downloads, and the one-time InternLM2 -> Llama conversion.

InternLM2 checkpoints are converted once, shard by shard, into an ordinary Llama checkpoint under
``$B2NER_HOME/converted/`` (weights keep their dtype; peak memory is about one output shard). From there
every placement path of transformers applies unchanged: bf16, 4-bit, device maps over several GPUs.
No Hub remote code is ever run.

Concurrent runs convert once: each conversion holds an exclusive ``fcntl.flock`` on ``<target>.lock`` beside the
target; the others wait on it and then find the target done. A conversion is built in a temporary folder and
renamed into place complete; a stale target (its source changed) is renamed aside first and removed only after
the new one is in place, and a target that appeared meanwhile is kept (the new copy is dropped).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .registry import b2ner_home
from .resolve import ModelSource, read_json, resolve

Note = Callable[[str], None]
SHARD_BYTES = 2 * 1024**3
STAMP = "b2ner-source.json"


def converted_root() -> Path:
    return b2ner_home() / "converted"


def _key(source: ModelSource) -> str:
    if source.repo_id and source.revision:
        return f"{source.repo_id.replace('/', '--')}--{source.revision}"
    return "local--" + hashlib.sha1(str(source.path.resolve()).encode()).hexdigest()[:16]


def _stamp(path: Path) -> dict[str, list[int]]:
    """Sizes and modification times of the source files, so a changed source is converted again."""
    return {
        f.name: [f.stat().st_size, f.stat().st_mtime_ns]
        for f in sorted(path.iterdir())
        if f.is_file() and (f.suffix in (".safetensors", ".bin", ".json", ".model"))
    }


def _fresh(dst: Path, src: Path) -> bool:
    stamp = dst / STAMP
    if not stamp.is_file():
        return False
    try:
        return json.loads(stamp.read_text(encoding="utf-8")).get("files") == _stamp(src)
    except (OSError, json.JSONDecodeError):
        return False


def _publish(tmp: Path, dst: Path, src: Path) -> Path:
    """Rename the complete ``tmp`` into place: never delete-then-rename, never clobber a fresh target."""
    (tmp / STAMP).write_text(json.dumps({"source": str(src), "files": _stamp(src)}, indent=1), encoding="utf-8")
    if _fresh(dst, src):  # another run published it meanwhile: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        return dst
    old = None
    if dst.exists():  # stale (the source changed): move it aside, remove it once the new one is in place
        old = dst.with_name(f".{dst.name}.{os.getpid()}-{secrets.token_hex(4)}.old")
        os.replace(dst, old)
    try:
        os.rename(tmp, dst)
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not _fresh(dst, src):
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # it appeared between the check and the rename: keep it
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dst


@contextlib.contextmanager
def _locked(dst: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<dst>.lock`` (waiting for any other holder); a no-op without fcntl."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst.with_name(dst.name + ".lock"), "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether a write failed for want of space (safetensors raises SafetensorError, not OSError, for that)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    if "No space left" in str(exc) or "os error 28" in str(exc) or "Disk quota" in str(exc):
        return True
    try:
        return shutil.disk_usage(folder).free < 64 * 1024**2
    except OSError:
        return False


def convert_internlm2_checkpoint(src: Path, dst: Path, *, shard_bytes: int = SHARD_BYTES) -> Path:
    """Write ``src`` (InternLM2) as a Llama checkpoint at ``dst``, atomically, streaming shard by shard."""
    from safetensors.torch import save_file

    from .internlm2 import generation_config, iter_llama_tensors, llama_config, read_config

    raw = read_config(src)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    tmp.mkdir(parents=True)
    try:
        shards: list[dict[str, Any]] = []
        current: dict[str, Any] = {}
        size = 0
        for name, tensor in iter_llama_tensors(src, raw):
            current[name] = tensor.clone()  # own storage: split rows of wqkv must not share memory in the file
            size += tensor.numel() * tensor.element_size()
            if size >= shard_bytes:
                shards.append(current)
                save_file(current, str(tmp / f"part-{len(shards)}.safetensors"), metadata={"format": "pt"})
                current, size = {}, 0
        if current or not shards:
            shards.append(current)
            save_file(current, str(tmp / f"part-{len(shards)}.safetensors"), metadata={"format": "pt"})
        names = _name_shards(tmp, len(shards))
        if len(shards) > 1:
            weight_map = {key: names[i] for i, shard in enumerate(shards) for key in shard}
            (tmp / "model.safetensors.index.json").write_text(
                json.dumps({"metadata": {}, "weight_map": weight_map}, indent=1), encoding="utf-8"
            )
        config = llama_config(raw)
        config.architectures = ["LlamaForCausalLM"]
        config.save_pretrained(tmp)
        generation_config(src, raw).save_pretrained(tmp)
        return _publish(tmp, dst, src)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _name_shards(folder: Path, count: int) -> list[str]:
    names = (
        ["model.safetensors"]
        if count == 1
        else [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]
    )
    for i, name in enumerate(names, start=1):
        os.replace(folder / f"part-{i}.safetensors", folder / name)
    return names


def convert_internlm2_adapter(adapter: Path, backbone_config: dict[str, Any], dst: Path) -> Path:
    from .internlm2 import convert_wqkv_lora

    tmp = dst.with_name(f".{dst.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        convert_wqkv_lora(adapter, backbone_config, tmp)
        return _publish(tmp, dst, adapter)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _needs_conversion(adapter_config: dict[str, object]) -> bool:
    targets = adapter_config.get("target_modules")
    names = [targets] if isinstance(targets, str) else list(targets) if isinstance(targets, list) else []
    internlm2_names = {"wqkv", "wo", "w1", "w2", "w3", "output", "tok_embeddings"}
    return any(str(n) in internlm2_names or "attention.wqkv" in str(n) for n in names)


def prepare(backbone: ModelSource, adapter: ModelSource | None, *, note: Note) -> tuple[Path, Path | None]:
    """Llama-layout folders for an InternLM2 backbone (and its adapter), converting on first use."""
    raw = read_json(backbone, "config.json")
    dst = converted_root() / _key(backbone)
    if not _fresh(dst, backbone.path):
        with _locked(dst):
            if not _fresh(dst, backbone.path):  # another run may have converted it while this one waited
                note(f"Converting {backbone.ref} from InternLM2 to the Llama layout (once; stored in {dst}).")
                _convert(lambda: convert_internlm2_checkpoint(backbone.path, dst), dst)
    adapter_dir = None
    if adapter is not None:
        adapter_dir = adapter.path
        if _needs_conversion(read_json(adapter, "adapter_config.json")):
            adapter_dir = converted_root() / "adapters" / _key(adapter)
            if not _fresh(adapter_dir, adapter.path):
                with _locked(adapter_dir):
                    if not _fresh(adapter_dir, adapter.path):
                        target = adapter_dir
                        _convert(lambda: convert_internlm2_adapter(adapter.path, raw, target), target)
    return dst, adapter_dir


def _convert(run: Callable[[], Path], dst: Path) -> None:
    """Run a conversion; disk-full and write errors become a ModelError with a hint."""
    from safetensors import SafetensorError

    try:
        run()
    except (OSError, SafetensorError) as exc:
        if _disk_full(exc, dst.parent):
            raise ModelError(
                f"No space left to write the converted model to {dst}.",
                "Free disk space there, or point B2NER_HOME at a disk with room for a copy of the model.",
            ) from None
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise ModelError(
            f"Could not write the converted model to {dst} ({detail}).",
            "Check that B2NER_HOME is writable, or point it at another disk.",
        ) from None


def download(
    name: str,
    *,
    revision: str | None = None,
    adapter_revision: str | None = None,
    quiet: bool = False,
    note: Note | None = None,
) -> list[Path]:
    """Fetch a model and its adapter into the cache (converting InternLM2 once); the local paths."""
    resolved = resolve(name, revision=revision, adapter_revision=adapter_revision, quiet=quiet, for_download=True)
    paths = [resolved.backbone.path] + ([resolved.adapter.path] if resolved.adapter else [])
    if read_json(resolved.backbone, "config.json").get("model_type") == "internlm2":
        prepare(resolved.backbone, resolved.adapter, note=note or (lambda _: None))
    return paths

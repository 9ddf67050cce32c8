"""Load time and peak memory of InternLM2-format checkpoints through b2ner's native (no remote code) path.

For the tiny conformance fixture and a ~100M-parameter random InternLM2-format checkpoint, each measured in a
fresh process: the first load (one-time conversion to the Llama layout + load) and a cached load, on CPU in
float32. Peak RSS is reported above the same process's RSS after importing torch and transformers (the baseline,
measured in the same run), and as a ratio to the float32 size of the weights.

    python benchmarks/bench_load.py              # needs ../shared/fixtures/internlm2-tiny (for its tokenizer)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "internlm2-tiny"

CHILD = r"""
import json, os, resource, sys, time
import torch, transformers  # the baseline: what any load needs anyway
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
from b2ner_cli.models.loading import load
from b2ner_cli.models.spec import ModelSpec
start = time.perf_counter()
loaded = load(ModelSpec(sys.argv[1], device="cpu"), quiet=True)
seconds = time.perf_counter() - start
params = sum(p.numel() for p in loaded.model.parameters())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "baseline_rss": base, "peak_rss": peak, "params": params}))
"""


def random_internlm2(folder: Path, *, hidden: int, layers: int, heads: int, kv: int, inter: int) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    config = json.loads((FIXTURE / "backbone" / "config.json").read_text())
    config.update(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=inter,
    )
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    for name in ("tokenizer.model", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(FIXTURE / "backbone" / name, folder / name)
    vocab, d = config["vocab_size"], hidden // heads
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)

    shard1 = {
        "model.tok_embeddings.weight": rand(vocab, hidden),
        "output.weight": rand(vocab, hidden),
        "model.norm.weight": torch.ones(hidden, dtype=torch.bfloat16),
    }
    shard2 = {}
    for i in range(layers):
        p = f"model.layers.{i}."
        shard2.update(
            {
                p + "attention.wqkv.weight": rand((heads + 2 * kv) * d, hidden),
                p + "attention.wo.weight": rand(hidden, hidden),
                p + "feed_forward.w1.weight": rand(inter, hidden),
                p + "feed_forward.w3.weight": rand(inter, hidden),
                p + "feed_forward.w2.weight": rand(hidden, inter),
                p + "attention_norm.weight": torch.ones(hidden, dtype=torch.bfloat16),
                p + "ffn_norm.weight": torch.ones(hidden, dtype=torch.bfloat16),
            }
        )
    names = {"model-00001-of-00002.safetensors": shard1, "model-00002-of-00002.safetensors": shard2}
    for name, tensors in names.items():
        save_file(tensors, str(folder / name), metadata={"format": "pt"})
    weight_map = {k: name for name, tensors in names.items() for k in tensors}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def measure(model_dir: Path, home: Path) -> dict[str, float]:
    env = {**os.environ, "B2NER_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(model_dir)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if not FIXTURE.is_dir():
        sys.exit(f"needs the conformance fixture at {FIXTURE}")
    work = Path(tempfile.mkdtemp(prefix="b2ner-bench-load-"))
    try:
        cases = {
            "tiny fixture": FIXTURE / "backbone",
            "random ~100M": random_internlm2(work / "m100", hidden=512, layers=8, heads=8, kv=2, inter=1536),
        }
        print("checkpoint       load               seconds  params       f32 weights  peak RSS above baseline  ratio")
        for label, path in cases.items():
            home = work / f"home-{label.split()[1]}"
            for kind in ("first (convert)", "cached"):
                r = measure(path, home)
                f32 = r["params"] * 4
                above = r["peak_rss"] - r["baseline_rss"]
                print(
                    f"{label:16} {kind:17} {r['seconds']:8.2f}  {r['params']:>11,}  {f32 / 2**20:8.0f} MiB"
                    f"  {above / 2**20:10.0f} MiB             {above / f32:5.2f}x"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

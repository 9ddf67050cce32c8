#!/usr/bin/env python3
"""GPU checks of b2ner, for a GPU machine with no network (or `--smoke` on CPU to test this script).

Run from the project root with the project importable (PYTHONPATH=. or installed) and the InternLM2 tokenizer
fixture reachable: B2NER_FIXTURE=<dir holding backbone/ and adapter/ of internlm2-tiny> (../shared/fixtures/
internlm2-tiny here; on a GPU machine without network, put a copy beside the script). bitsandbytes and jsonlines
may be missing there: install them from wheels brought along.
    python benchmarks/gpu_check.py [throughput] [cli] [static] [--engines hf,continuous] [--smoke]
    # results under $OUT (or ./gpu-out); --smoke: tiny shapes on CPU, to check this script without a GPU

Part 1 (cli): a random InternLM2-format checkpoint + wqkv LoRA through the real CLI on CUDA: bf16 (auto),
float32, 4-bit, 8-bit, data-parallel, bench, QLoRA finetune; answers compared with a CPU float32 run.
Part 2 (throughput): an InternLM2.5-7B-shaped random Llama in bf16 on the GPU: tokens/s of upstream-style
loops (one generate per document; batches of 4) against b2ner's engines (``--engines``: hf, the default, and
continuous, transformers' continuous batching) at batch 16/64/128/256, and the memory-bandwidth bound (one
read of the weights per decoding step). Every answer is forced to the same length (no EOS, no runaway rule) so
that the work is identical. Part 3 (static): transformers' static cache at batch 64.

Results: one JSON per part under $OUT (or ./gpu-out), plus logs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PARTS = ("throughput", "cli", "static")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", help=f"parts to run, of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU: checks the script, not the GPU")
    parser.add_argument("--engines", default="hf,continuous", help="engines to measure, comma-separated")
    parser.add_argument("--fixture", default=os.environ.get("B2NER_FIXTURE", "../shared/fixtures/internlm2-tiny"),
                        help="folder holding backbone/ and adapter/ of internlm2-tiny (for the tokenizer)")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu-out", help="where results go")
    args = parser.parse_args(argv)
    args.parts = args.parts or list(PARTS)
    if set(args.parts) - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(set(args.parts) - set(PARTS)))} ({', '.join(PARTS)})")
    if "static" in args.parts and ("throughput" not in args.parts or args.smoke):
        parser.error("static runs on the model of throughput, on a GPU: give both, without --smoke")
    args.engines = [e for e in args.engines.split(",") if e]
    unknown = set(args.engines) - {"hf", "continuous"}
    if unknown:
        parser.error(f"unknown engines: {', '.join(sorted(unknown))} (hf, continuous)")
    return args


ARGS = parse_args()
FIXTURE = Path(ARGS.fixture) / "backbone"
OUT = Path(ARGS.out)
OUT.mkdir(parents=True, exist_ok=True)
SMOKE = ARGS.smoke
WORK = Path(os.environ.get("GPU_WORK") or Path(__import__("tempfile").gettempdir()) / "gpuwork")


def log(*a):
    print(*a, flush=True)


def random_internlm2(folder: Path, *, hidden, layers, heads, kv, inter, seed=0):
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = json.loads((FIXTURE / "config.json").read_text())
    config.update(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  num_key_value_heads=kv, intermediate_size=inter)
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    for name in ("tokenizer.model", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(FIXTURE / name, folder / name)
    vocab, d = config["vocab_size"], hidden // heads
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return (torch.randn(*shape, generator=g) * 0.05).to(torch.bfloat16)

    t = {"model.tok_embeddings.weight": rand(vocab, hidden), "output.weight": rand(vocab, hidden),
         "model.norm.weight": torch.ones(hidden, dtype=torch.bfloat16)}
    for i in range(layers):
        p = f"model.layers.{i}."
        t.update({p + "attention.wqkv.weight": rand((heads + 2 * kv) * d, hidden),
                  p + "attention.wo.weight": rand(hidden, hidden),
                  p + "feed_forward.w1.weight": rand(inter, hidden),
                  p + "feed_forward.w3.weight": rand(inter, hidden),
                  p + "feed_forward.w2.weight": rand(hidden, inter),
                  p + "attention_norm.weight": torch.ones(hidden, dtype=torch.bfloat16),
                  p + "ffn_norm.weight": torch.ones(hidden, dtype=torch.bfloat16)})
    save_file(t, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder, config


def random_adapter(folder: Path, config, r=8, seed=1):
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    src = json.loads((FIXTURE.parent / "adapter" / "adapter_config.json").read_text())
    src.update(r=r, lora_alpha=2 * r, base_model_name_or_path="internlm/internlm2_5-7b")
    (folder / "adapter_config.json").write_text(json.dumps(src, indent=1))
    hidden, heads, kv = config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"]
    rows = (heads + 2 * kv) * (hidden // heads)
    g = torch.Generator().manual_seed(seed)
    t = {}
    for i in range(config["num_hidden_layers"]):
        p = f"base_model.model.model.layers.{i}.attention.wqkv."
        t[p + "lora_A.weight"] = (torch.randn(r, hidden, generator=g) * 0.05).to(torch.bfloat16)
        t[p + "lora_B.weight"] = (torch.randn(rows, r, generator=g) * 0.05).to(torch.bfloat16)
    save_file(t, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    return folder


def run_cli(name, args, timeout=300, env=None):
    e = dict(os.environ, HF_HUB_OFFLINE="1", B2NER_HOME=str(WORK / "home"), NO_COLOR="1", COLUMNS="160")
    e.update(env or {})
    t = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", "b2ner_cli", *map(str, args)], capture_output=True, text=True,
                           timeout=timeout, env=e)
        rc, so, se = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as exc:
        rc, so, se = 124, exc.stdout or "", (exc.stderr or "") if isinstance(exc.stderr, str) else "timeout"
    wall = time.perf_counter() - t
    (OUT / "logs").mkdir(exist_ok=True)
    (OUT / "logs" / f"{name}.log").write_text(f"$ b2ner {' '.join(map(str, args))}\nrc={rc} wall={wall:.1f}s\n"
                                              f"--- stdout (tail)\n{so[-3000:]}\n--- stderr\n{se[-6000:]}\n")
    log(f"[{name}] rc={rc} wall={wall:.1f}s :: {se.strip().splitlines()[-1][:200] if se.strip() else ''}")
    return rc, so, se, wall


def raws(path: Path):
    if not path.exists():
        return None
    return [json.loads(line).get("raw") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def part_cli():
    res = {}
    size = dict(hidden=128, layers=2, heads=4, kv=2, inter=256) if SMOKE else \
        dict(hidden=1024, layers=8, heads=16, kv=8, inter=2816)
    ckpt, cfg = random_internlm2(WORK / "ckpt", **size)
    adapter = random_adapter(WORK / "adapter", cfg)
    corpus = WORK / "docs.txt"
    from b2ner_cli.benchmark import synthetic_corpus

    lines = [d.text for d in synthetic_corpus(48)]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    base = ["extract", "-m", ckpt, "--adapter", adapter, "-l", "person,organization,location", "--keep-raw",
            "--max-new-tokens", "24", str(corpus)]
    runs = {"gpu_auto": [], "gpu_f32": ["--dtype", "float32"], "cpu_f32": ["--device", "cpu"],
            "gpu_4bit": ["--quantize", "4bit"], "gpu_8bit": ["--quantize", "8bit"],
            "gpu_dp": ["--data-parallel", "auto"], "gpu_merge": ["--merge"]}
    if SMOKE:
        runs = {k: v for k, v in runs.items() if k in ("cpu_f32", "gpu_auto")}
    outs = {}
    for name, extra in runs.items():
        out = WORK / f"{name}.jsonl"
        rc, so, se, wall = run_cli(name, [*base, *extra, "-o", out])
        meta = {}
        mp = Path(str(out) + ".meta.json")
        if mp.exists():
            m = json.loads(mp.read_text())
            meta = {k: m.get(k) for k in ("dtype", "device", "quantize", "status")}
            meta["model_info"] = {k: v for k, v in m.items() if k in ("placement", "model")}
        outs[name] = raws(out)
        res[name] = {"rc": rc, "wall_s": round(wall, 1), "meta": meta, "stderr_tail": se.strip()[-400:]}
    ref = outs.get("cpu_f32")
    for name, got in outs.items():
        if ref and got and name != "cpu_f32":
            res[name]["same_raw_as_cpu_f32"] = f"{sum(a == b for a, b in zip(got, ref, strict=False))}/{len(ref)}"
    # bench on the mid model
    if not SMOKE:
        rc, so, se, wall = run_cli("bench", ["bench", "-m", ckpt, "--adapter", adapter, "--batch-sizes", "1,8,32,128",
                                            "--docs", "128", "--json", "--max-new-tokens", "24"], timeout=400)
        try:
            res["bench"] = json.loads(so)["runs"]
        except Exception:
            res["bench"] = {"rc": rc, "stderr": se[-600:]}
        # QLoRA finetune, then extract with the new adapter
        train = WORK / "train.jsonl"
        rows = []
        for i, t in enumerate(["Nora Quist flew to Oslo .", "Omar Fadel met Tao Ren in Quito .",
                               "The meeting in Hanoi was quiet .", "Greta Lind stayed home ."] * 4):
            ents = [{"start": t.index(m), "end": t.index(m) + len(m), "label": lab, "text": m}
                    for m, lab in [("Nora Quist", "person"), ("Oslo", "city"), ("Omar Fadel", "person"),
                                   ("Tao Ren", "person"), ("Quito", "city"), ("Hanoi", "city"),
                                   ("Greta Lind", "person")] if m in t]
            rows.append({"id": f"t{i}", "text": t, "entities": ents})
        train.write_text("".join(json.dumps(r) + "\n" for r in rows))
        for q in ("4bit", "none"):
            name = f"finetune_{q}"
            rc, so, se, wall = run_cli(name, ["finetune", train, "-m", ckpt, "--output", WORK / name,
                                              "--labels", "person,city", "--epochs", "2", "--quantize", q],
                                       timeout=300)
            res[name] = {"rc": rc, "wall_s": round(wall, 1), "stderr_tail": se.strip()[-500:]}
            if rc == 0:
                rc2, _, se2, _ = run_cli(name + "_extract", ["extract", "--adapter", WORK / name, "-l",
                                                                "person,city", str(train), "--quantize", q])
                res[name]["extract_rc"] = rc2
                res[name]["extract_stderr"] = se2.strip()[-300:]
    return res


def part_throughput():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    import b2ner_cli.engine.base as engine_base
    import b2ner_cli.engine.hf as hf
    from b2ner_cli.benchmark import synthetic_corpus
    from b2ner_cli.engine.batching import plan_batches
    from b2ner_cli.engine.registry import create_generator
    from b2ner_cli.labels import parse_labels_arg
    from b2ner_cli.models.internlm2 import load_internlm2_tokenizer
    from b2ner_cli.prompts import build_instruction

    res = {}
    dev = "cpu" if SMOKE else "cuda"
    dtype = torch.float32 if SMOKE else torch.bfloat16
    shape = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=8,
                 num_key_value_heads=2) if SMOKE else \
        dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
             num_key_value_heads=8)
    cfg = LlamaConfig(vocab_size=92544, max_position_embeddings=32768, rope_theta=1e6, bos_token_id=1,
                      eos_token_id=2, pad_token_id=2, tie_word_embeddings=False, **shape)
    t = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(dev):
        model = LlamaForCausalLM(cfg).to(dtype).eval()
    res["init_s"] = round(time.perf_counter() - t, 1)
    params = sum(p.numel() for p in model.parameters())
    wbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    res["params"] = params
    tok = load_internlm2_tokenizer(FIXTURE)
    NEW = 8 if SMOKE else 32
    never = lambda tokens: False  # noqa: E731  identical work across engines: no early stop
    hf.is_runaway = engine_base.is_runaway = never  # the hf loop's rule, and the cut other engines apply after
    generators = {}
    for name in ARGS.engines:
        generators[name] = create_generator(name, model, tok, max_new_tokens=NEW, info={})
        generators[name].eos_ids = [-1]  # never stop at EOS: every answer is exactly NEW tokens
    gen = generators.get("hf") or hf.HFGenerator(model, tok, max_new_tokens=NEW)
    gen.eos_ids = [-1]
    labels = parse_labels_arg("person,organization,location")
    docs = synthetic_corpus(16 if SMOKE else 512)
    prompts = [gen.encode(build_instruction(d.text, labels, "en", ())) for d in docs]
    res["prompt_tokens_mean"] = sum(map(len, prompts)) / len(prompts)

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    # bandwidth
    if dev == "cuda":
        buf = torch.empty(2 * 2**30, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(buf)
        for _ in range(3):
            dst.copy_(buf)
        sync()
        t = time.perf_counter()
        for _ in range(10):
            dst.copy_(buf)
        sync()
        bw = 2 * buf.numel() * 10 / (time.perf_counter() - t)
        del buf, dst
        res["copy_bandwidth_GBps"] = round(bw / 1e9)
        res["weight_bytes"] = wbytes
        res["bound_step_ms"] = round(wbytes / bw * 1e3, 2)

    def hf_generate(batch):
        ids, mask = hf.left_pad(batch, gen.pad_id)
        with torch.inference_mode():
            out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), max_new_tokens=NEW,
                                 min_new_tokens=NEW, do_sample=False, pad_token_id=2, eos_token_id=2)
        return out.shape[1] - ids.shape[1]

    def measure(name, fn, items):
        fn(items[:2])  # warm-up
        sync()
        t = time.perf_counter()
        n_tok = fn(items)
        sync()
        s = time.perf_counter() - t
        res[name] = {"docs": len(items), "seconds": round(s, 2), "docs_per_s": round(len(items) / s, 2),
                     "new_tokens_per_s": round(n_tok / s, 1)}
        log(name, res[name])

    def one_by_one(items):
        return sum(hf_generate([p]) for p in items)

    def batches_of(k):
        def fn(items):
            return sum(hf_generate(items[i:i + k]) * len(items[i:i + k]) for i in range(0, len(items), k))
        return fn

    def engine(bs, cache=True, name="hf"):
        def fn(items):
            generator = generators.get(name, gen)
            if name == "hf":
                generator.prefix_cache = cache
            total = 0
            for b in plan_batches([len(p) for p in items], max_batch_size=bs, max_batch_tokens=10**9):
                total += sum(g.new_tokens for g in generator.generate([items[i] for i in b]))
            return total
        return fn

    n1 = 4 if SMOKE else 24
    measure("a_hf_generate_one_by_one", one_by_one, prompts[:n1])
    measure("b_hf_generate_batches_of_4", batches_of(4), prompts[:4 * n1])
    for bs in ([4, 16] if SMOKE else [16, 64, 128, 256]):
        for name in generators:
            label = "c_b2ner_engine" if name == "hf" else f"f_{name}_engine"
            measure(f"{label}_bs{bs}", engine(bs, name=name), prompts[: max(bs * 2, 16 if SMOKE else 64)])
    measure("d_b2ner_engine_bs64_nocache", engine(64, cache=False), prompts[:16 if SMOKE else 128])
    for generator in generators.values():
        if hasattr(generator, "close"):
            generator.close()
    if dev == "cuda":
        res["peak_gpu_mem_GiB"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        for k, v in list(res.items()):
            if isinstance(v, dict) and "new_tokens_per_s" in v:
                bs = 1 if k.startswith("a_") else 4 if k.startswith("b_") else int(k.split("_bs")[1].split("_")[0])
                bound = bs / (res["bound_step_ms"] / 1e3)
                v["bandwidth_bound_tokens_per_s"] = round(bound)
                v["fraction_of_bound"] = round(v["new_tokens_per_s"] / bound, 3)
    STATE.update(model=model, prompts=prompts, bound_step_ms=res.get("bound_step_ms"), NEW=NEW)
    gen._prefixes.clear()
    res["engines"] = ARGS.engines
    if dev == "cuda":
        torch.cuda.empty_cache()
    return res


STATE: dict = {}


def part_static():
    """transformers' own static cache (+ its automatic compile) at batch 64, on the 7B model of part throughput."""
    import torch

    import b2ner_cli.engine.hf as hf

    res = {}
    model, prompts, NEW, dev = STATE["model"], STATE["prompts"], STATE["NEW"], "cuda"

    def sync():
        torch.cuda.synchronize()

    if True:
        try:
            batch = prompts[:64]
            ids, mask = hf.left_pad(batch, 2)
            ids, mask = ids.to(dev), mask.to(dev)
            kw = dict(max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, pad_token_id=2, eos_token_id=2,
                      cache_implementation="static")
            t = time.perf_counter()
            with torch.inference_mode():
                model.generate(input_ids=ids, attention_mask=mask, **kw)
                sync()
                res["e_static_compile_first_call_s"] = round(time.perf_counter() - t, 1)
                t = time.perf_counter()
                out = model.generate(input_ids=ids, attention_mask=mask, **kw)
                sync()
            s = time.perf_counter() - t
            n = (out.shape[1] - ids.shape[1]) * 64
            bound = 64 / (STATE["bound_step_ms"] / 1e3)
            res["e_hf_static_cache_bs64"] = {"seconds": round(s, 2), "new_tokens_per_s": round(n / s, 1),
                                             "fraction_of_bound": round(n / s / bound, 3)}
            log("static", res["e_hf_static_cache_bs64"])
        except Exception as exc:
            res["e_static_error"] = repr(exc)[:300]
    return res


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    info = {}
    for mod in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "huggingface_hub", "typer", "rich"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "?")
        except Exception as exc:
            info[mod] = f"missing: {exc!r}"[:120]
    try:
        import torch
        info["cuda"] = torch.cuda.is_available() and torch.cuda.get_device_name(0)
    except Exception:
        pass
    log(json.dumps(info))
    (OUT / "env.json").write_text(json.dumps(info, indent=1))
    for part in ARGS.parts:
        t = time.perf_counter()
        try:
            res = {"cli": part_cli, "throughput": part_throughput, "static": part_static}[part]()
        except Exception:
            import traceback
            res = {"error": traceback.format_exc()[-2000:]}
        res["part_wall_s"] = round(time.perf_counter() - t, 1)
        (OUT / f"{part}.json").write_text(json.dumps(res, indent=1, default=str))
        log(f"== {part} done in {res['part_wall_s']} s")


if __name__ == "__main__":
    main()

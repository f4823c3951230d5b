#!/usr/bin/env python3
"""PyTorch eager baselines for the GPU check (scripts/gpu-check.sh): training step and embedding throughput.

Why: the issue's targets are ratios of our burn-cuda binaries to PyTorch eager on the same GPU in the same
call, so each mode mirrors what the Rust side does, step for step.

train   The `distill` step at LaBSE-en-ru size. A BertModel built from the BertConfig of --model-dir (the
        random checkpoint that `random-model` wrote; its weights are not loaded: random init, as the cost
        does not depend on values), dropout 0 (our BERT has none), fp32 (TF32 off unless --tf32).
        Teacher targets: CLS (or mean) embeddings of every batch by the initial model, computed before
        timing (distill reads them from its teacher cache). One step = tokenize en and ru batches, two
        forward passes, loss = MSE(s_en,t_en) + MSE(s_ru,t_ru) + MSE(s_ru,t_en) + 0.1 * symmetric in-batch
        ranking loss (scale 20), backward, global grad-norm clip 1.0, AdamW (no decay on bias/LayerNorm,
        eps 1e-6, wd 0.01) with linear warm-up/decay, loss read back to the host (distill checks it is
        finite every step). Batches: pairs of --pairs shuffled with --seed, epoch after epoch, like distill.
        Reports pairs/s over all steps and over the steps after --warmup (the steady state).
embed   Sentences/s of embedding --texts (repeated --repeat times) at each --batch-sizes: tokenize all,
        sort by token count (longest first, as `embed` does), pad each batch to its longest, forward,
        pool (mean), copy to the host. One untimed warm-up pass per batch size.

Prints one JSON object per line on stdout (and appends them to --json-out); progress goes to stderr.

    python3 scripts/reference/gpu_torch_bench.py train --model-dir DIR --pairs pairs.tsv --steps 200
    python3 scripts/reference/gpu_torch_bench.py embed --model-dir DIR --texts sentences.txt --batch-sizes 1,32,256
"""

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --- model and tokenizer -----------------------------------------------------------------------------------

def read_config(model_dir):
    with open(Path(model_dir) / "config.json", encoding="utf-8") as f:
        return json.load(f)


def build_model(cfg_json, attn, device, load_dir=None):
    """BertModel of the checkpoint's shape; weights loaded from load_dir when given (else random init)."""
    from transformers import BertConfig, BertModel

    if cfg_json.get("pruned_heads") or cfg_json.get("intermediate_sizes"):
        log("note: pruned checkpoint; the bench builds the full (unpruned) shape")
    cfg = BertConfig(
        vocab_size=cfg_json["vocab_size"],
        hidden_size=cfg_json["hidden_size"],
        num_hidden_layers=cfg_json["num_hidden_layers"],
        num_attention_heads=cfg_json["num_attention_heads"],
        intermediate_size=cfg_json["intermediate_size"],
        max_position_embeddings=cfg_json.get("max_position_embeddings", 512),
        type_vocab_size=cfg_json.get("type_vocab_size", 2),
        layer_norm_eps=cfg_json.get("layer_norm_eps", 1e-12),
        hidden_act=cfg_json.get("hidden_act", "gelu"),
        pad_token_id=cfg_json.get("pad_token_id", 0),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    try:  # transformers 4.x and 5.x both accept this
        model = BertModel._from_config(cfg, attn_implementation=attn, add_pooling_layer=False)
    except (TypeError, ValueError) as e:
        log(f"note: _from_config(attn_implementation={attn}) failed ({e}); setting the config attribute")
        cfg._attn_implementation = attn
        model = BertModel(cfg, add_pooling_layer=False)
    model = model.float()
    if load_dir is not None:
        from safetensors.torch import load_file

        state = load_file(str(Path(load_dir) / "model.safetensors"))
        state = {k[5:] if k.startswith("bert.") else k: v.float() for k, v in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        unexpected = [k for k in unexpected if not k.startswith("pooler.") and not k.endswith("position_ids")]
        if missing or unexpected:
            log(f"warning: weights of {load_dir}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.to(device), getattr(model.config, "_attn_implementation", attn)


class Tok:
    """HF `tokenizers` on the checkpoint's tokenizer.json (what the Rust side uses), else transformers'."""

    def __init__(self, model_dir, max_length):
        self.max_length = max_length
        path = Path(model_dir) / "tokenizer.json"
        if path.exists():
            from tokenizers import Tokenizer

            t = Tokenizer.from_file(str(path))
            t.no_padding()
            t.enable_truncation(max_length=max_length)
            self.fast = t
            self.pad_id = t.token_to_id("[PAD]") or 0
        else:
            from transformers import AutoTokenizer

            self.fast = None
            self.hf = AutoTokenizer.from_pretrained(str(model_dir))
            self.pad_id = self.hf.pad_token_id or 0

    def ids(self, texts):
        if self.fast is not None:
            return [e.ids for e in self.fast.encode_batch(list(texts))]
        return self.hf(list(texts), truncation=True, max_length=self.max_length)["input_ids"]

    def batch(self, id_lists, device):
        n = max(len(x) for x in id_lists)
        ids = torch.full((len(id_lists), n), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(id_lists), n), dtype=torch.long)
        for i, x in enumerate(id_lists):
            ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
            mask[i, : len(x)] = 1
        return ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)


def pool(hidden, mask, how):
    if how == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def env_info(device, attn, args):
    import transformers

    info = {"torch": torch.__version__, "transformers": transformers.__version__, "device": str(device),
            "attn": attn, "tf32": bool(args.tf32), "dtype": "float32"}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        info["threads"] = torch.get_num_threads()
    return info


def emit(rec, args):
    line = json.dumps(rec)
    print(line, flush=True)
    if args.json_out:
        with open(args.json_out, "a", encoding="utf-8") as f:
            f.write(line + "\n")


# --- train -------------------------------------------------------------------------------------------------

def read_pairs(path):
    pairs = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            cols = line.rstrip("\n").split("\t")
            if i == 0 and cols[:2] == ["en", "ru"]:
                continue
            if len(cols) >= 2 and cols[0].strip() and cols[1].strip():
                pairs.append((cols[0], cols[1]))
    if not pairs:
        sys.exit(f"error: {path}: no en<TAB>ru pairs")
    return pairs


def batch_order(n_pairs, batch, steps, seed):
    """Index batches for `steps` steps: a seeded shuffle per epoch, whole batches only (like distill)."""
    per_epoch = max(n_pairs // batch, 1)
    out, epoch = [], 0
    while len(out) < steps:
        order = list(range(n_pairs))
        random.Random(seed + epoch).shuffle(order)
        for b in range(per_epoch):
            out.append(order[b * batch:(b + 1) * batch])
            if len(out) == steps:
                break
        epoch += 1
    return out


def ranking_loss(a, b, scale):
    sim = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T * scale
    target = torch.arange(sim.shape[0], device=sim.device)
    return (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)) / 2


def run_train(args, device):
    cfg_json = read_config(args.model_dir)
    torch.manual_seed(args.seed)
    model, attn = build_model(cfg_json, args.attn, device)
    tok = Tok(args.tokenizer or args.model_dir, args.max_length)
    pairs = read_pairs(args.pairs)
    if len(pairs) < args.batch:
        sys.exit(f"error: {args.pairs}: {len(pairs)} pairs, fewer than one batch of {args.batch}")
    batches = batch_order(len(pairs), args.batch, args.steps, args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"train: {n_params / 1e6:.1f}M parameters, attn {attn}, {len(pairs)} pairs, {args.steps} steps of {args.batch}")

    # Teacher targets (the initial model, frozen), before timing.
    t0 = time.perf_counter()
    model.eval()
    targets = []
    with torch.no_grad():
        for idx in batches:
            out = []
            for side in (0, 1):
                ids, mask = tok.batch(tok.ids([pairs[i][side] for i in idx]), device)
                out.append(pool(model(input_ids=ids, attention_mask=mask).last_hidden_state, mask, args.pooling))
            targets.append(tuple(out))
    sync(device)
    teacher_s = time.perf_counter() - t0
    model.train()

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, eps=1e-6)
    warm = max(int(0.1 * args.steps), 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (args.steps - s) / max(args.steps - warm, 1)))

    def train_step(step, idx):
        t_en, t_ru = targets[step % len(targets)]
        ids_en, m_en = tok.batch(tok.ids([pairs[i][0] for i in idx]), device)
        ids_ru, m_ru = tok.batch(tok.ids([pairs[i][1] for i in idx]), device)
        s_en = pool(model(input_ids=ids_en, attention_mask=m_en).last_hidden_state, m_en, args.pooling)
        s_ru = pool(model(input_ids=ids_ru, attention_mask=m_ru).last_hidden_state, m_ru, args.pooling)
        loss = (F.mse_loss(s_en, t_en) + F.mse_loss(s_ru, t_ru) + F.mse_loss(s_ru, t_en)
                + args.w_rank * ranking_loss(s_en, s_ru, args.rank_scale))
        value = loss.item()  # distill reads the loss back every step (finite check)
        if not math.isfinite(value):
            sys.exit(f"error: non-finite loss {value} at step {step + 1}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        opt.step()
        sched.step()
        sync(device)
        return value

    times, losses = [], []
    for step, idx in enumerate(batches):
        t = time.perf_counter()
        value = train_step(step, idx)
        times.append(time.perf_counter() - t)
        losses.append(value)
        if (step + 1) % max(args.steps // 10, 1) == 0:
            log(f"  step {step + 1}/{args.steps}: loss {value:.5f}, {args.batch / times[-1]:.1f} pairs/s")

    if args.profile > 0:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            for k in range(args.profile):
                train_step(k, batches[k % len(batches)])
        avg = prof.key_averages()
        for key in (("cuda_time_total", "device_time_total", "cpu_time_total") if device.type == "cuda" else ("cpu_time_total",)):
            try:
                table = avg.table(sort_by=key, row_limit=30)
                break
            except (AttributeError, KeyError, ValueError):
                continue
        print(f"# torch.profiler, {args.profile} steps, sorted by {key}", flush=True)
        print(table, flush=True)

    steady = times[args.warmup:] if len(times) > args.warmup else times
    rec = {
        "bench": "torch_train", "steps": args.steps, "batch": args.batch, "max_length": args.max_length,
        "pooling": args.pooling, "params_m": round(n_params / 1e6, 2),
        "pairs_per_s": round(args.batch * len(times) / sum(times), 2),
        "pairs_per_s_steady": round(args.batch * len(steady) / sum(steady), 2),
        "warmup_steps": min(args.warmup, len(times)),
        "sec_per_step_median": round(sorted(steady)[len(steady) // 2], 5),
        "teacher_seconds": round(teacher_s, 2), "first_loss": round(losses[0], 6), "last_loss": round(losses[-1], 6),
    }
    if device.type == "cuda":
        rec["max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    rec.update(env_info(device, attn, args))
    emit(rec, args)


# --- embed -------------------------------------------------------------------------------------------------

def run_embed(args, device):
    cfg_json = read_config(args.model_dir)
    model, attn = build_model(cfg_json, args.attn, device, load_dir=None if args.random_init else args.model_dir)
    model.eval()
    tok = Tok(args.model_dir, args.max_length)
    base = [l.rstrip("\n") for l in open(args.texts, encoding="utf-8")]
    base = [t for t in base if t.strip()]
    if args.limit:
        base = base[: args.limit]
    sizes = [int(x) for x in args.batch_sizes.split(",") if x]
    reps = [int(x) for x in args.repeats.split(",")] if args.repeats else [args.repeat] * len(sizes)
    if len(reps) != len(sizes):
        sys.exit("error: --repeats needs one count per --batch-sizes entry")

    def embed_all(texts, bs):
        ids = tok.ids(texts)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # stable, longest first, as `embed`
        rows = 0
        for b in range(0, len(order), bs):
            x, m = tok.batch([ids[i] for i in order[b:b + bs]], device)
            v = pool(model(input_ids=x, attention_mask=m).last_hidden_state, m, "mean").cpu()
            rows += v.shape[0]
        return rows

    with torch.inference_mode():
        for bs, rep in zip(sizes, reps):
            texts = base * rep
            embed_all(texts[: max(2 * bs, 16)], bs)  # warm-up (cuBLAS handles, allocator)
            sync(device)
            t0 = time.perf_counter()
            n = embed_all(texts, bs)
            sync(device)
            secs = time.perf_counter() - t0
            rec = {"bench": "torch_embed", "model": args.name or Path(args.model_dir).name, "batch_size": bs, "texts": n,
                   "max_length": args.max_length, "seconds": round(secs, 3), "sent_per_s": round(n / secs, 1)}
            rec.update(env_info(device, attn, args))
            emit(rec, args)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("mode", choices=["train", "embed"])
    p.add_argument("--model-dir", required=True, help="HF checkpoint dir (config.json; weights for embed)")
    p.add_argument("--tokenizer", help="dir with tokenizer.json (default: --model-dir)")
    p.add_argument("--device", default="cuda", help="cuda | cpu (default cuda)")
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="HF attention implementation")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (default: strict fp32)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    p.add_argument("--json-out", help="append the JSON result lines to this file")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-length", type=int, default=None, help="train: 64, embed: 128")
    # train
    p.add_argument("--pairs", help="train: en<TAB>ru TSV")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20, help="steps left out of the steady-state rate")
    p.add_argument("--pooling", default="cls", choices=["cls", "mean"])
    p.add_argument("--profile", type=int, default=0, help="train: profile N more steps, print the top kernels")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--w-rank", type=float, default=0.1)
    p.add_argument("--rank-scale", type=float, default=20.0)
    # embed
    p.add_argument("--texts", help="embed: one text per line")
    p.add_argument("--repeat", type=int, default=1, help="embed: texts repeated this many times")
    p.add_argument("--repeats", help="embed: one repeat count per batch size (overrides --repeat)")
    p.add_argument("--name", help="embed: model label in the output (default: the dir name)")
    p.add_argument("--limit", type=int, default=0, help="embed: at most this many texts (0: all)")
    p.add_argument("--batch-sizes", default="1,32,256")
    p.add_argument("--random-init", action="store_true", help="embed: do not load the weights")
    args = p.parse_args()

    if args.max_length is None:
        args.max_length = 64 if args.mode == "train" else 128
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("error: --device cuda, but torch.cuda.is_available() is False")
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    if args.mode == "train":
        if not args.pairs:
            sys.exit("error: train needs --pairs")
        run_train(args, device)
    else:
        if not args.texts:
            sys.exit("error: embed needs --texts")
        run_embed(args, device)


if __name__ == "__main__":
    main()

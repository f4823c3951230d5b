#!/usr/bin/env python3
"""PyTorch baselines (pairs/s) for the two training-loop stages of sekator.

Why: BENCHMARKS.md reports our Rust stages as ratios to these numbers, so each
mode is the plain PyTorch version of the same computation, on the same data
(en-ru pairs in file order), with 2 threads, batch 32, max_length 64.

importance  MiniLM in eval mode (no dropout), weights frozen. A head mask
            [layers, heads] of ones (requires_grad) goes in as head_mask=, and
            each layer's `intermediate` output (the GELU activations) is
            multiplied by a ones vector (requires_grad) through a forward hook.
            Loss = symmetric in-batch translation ranking; one step = forward +
            backward (gradients land on the masks only). --param-grads also
            computes weight gradients, for comparison with an autodiff that
            tracks everything.
distill     Teacher = frozen MiniLM, its mean-pooled en/ru embeddings computed
            before timing. Student = a copy of MiniLM in eval mode (no
            dropout), as sekator's student is; `--student-mode train` gives
            the dropout student of BENCHMARKS.md before 2026-12-02. AdamW
            lr 5e-5, gradient clipping at norm 1 (as sekator's). Loss =
            MSE(s_en, t_en) + MSE(s_ru, t_ru) + MSE(s_ru, t_en)
            + 0.1 ranking(s_en, s_ru) (sekator's default weights). One step =
            forward + backward + clipping + optimizer.

Ranking loss: cosine similarity matrix of en vs ru mean-pooled embeddings,
times scale 20, cross-entropy against the diagonal in both directions,
averaged. Tokenization is inside the timed region. One warm-up step, then
--steps timed steps; prints one JSON line.

    /root/venvs/sekator-ref/bin/python scripts/reference/bench_train_torch.py importance
    /root/venvs/sekator-ref/bin/python scripts/reference/bench_train_torch.py distill
"""

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

REPO = Path(__file__).resolve().parents[2]
SCALE = 20.0


def read_pairs(path, n):
    pairs = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        en_i, ru_i = header.index("en"), header.index("ru")
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) > max(en_i, ru_i) and cols[en_i] and cols[ru_i]:
                pairs.append((cols[en_i], cols[ru_i]))
                if len(pairs) == n:
                    break
    return pairs


def mean_pool(model, tok, texts, max_length, **kw):
    enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    hidden = model(**enc, **kw).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1)


def ranking_loss(a, b):
    sim = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T * SCALE
    target = torch.arange(sim.shape[0])
    return (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)) / 2


def run_importance(model, tok, batches, args):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(args.param_grads)
    cfg = model.config
    head_mask = torch.ones(cfg.num_hidden_layers, cfg.num_attention_heads, requires_grad=True)
    ffn_masks = [torch.ones(cfg.intermediate_size, requires_grad=True) for _ in range(cfg.num_hidden_layers)]
    for layer, mask in zip(model.encoder.layer, ffn_masks):
        layer.intermediate.register_forward_hook(lambda mod, inp, out, mask=mask: out * mask)

    def step(en, ru):
        e = mean_pool(model, tok, en, args.max_length, head_mask=head_mask)
        r = mean_pool(model, tok, ru, args.max_length, head_mask=head_mask)
        loss = ranking_loss(e, r)
        loss.backward()
        return loss.item()

    return step


def run_distill(model, tok, batches, args):
    teacher = model.eval()
    with torch.no_grad():  # precomputed, not timed
        targets = [(mean_pool(teacher, tok, en, args.max_length), mean_pool(teacher, tok, ru, args.max_length))
                   for en, ru in batches]
    student = copy.deepcopy(teacher)
    student.train(args.student_mode == "train")
    for p in student.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(student.parameters(), lr=5e-5)
    it = iter(targets)

    def step(en, ru):
        t_en, t_ru = next(it)
        s_en = mean_pool(student, tok, en, args.max_length)
        s_ru = mean_pool(student, tok, ru, args.max_length)
        loss = (F.mse_loss(s_en, t_en) + F.mse_loss(s_ru, t_ru) + F.mse_loss(s_ru, t_en)
                + 0.1 * ranking_loss(s_en, s_ru))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        return loss.item()

    return step


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["importance", "distill"])
    p.add_argument("--pairs", default="/work/shared/data/en-ru/pairs.tsv")
    p.add_argument("--model", default=str(REPO / "data/models/all-MiniLM-L6-v2"))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--student-mode", choices=["eval", "train"], default="eval",
                   help="distill: the student without dropout (default, as sekator's) or with it")
    p.add_argument("--param-grads", action="store_true", help="importance: also compute weight gradients")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(args.model)
    # eager attention: head_mask is not supported by the SDPA path.
    model = AutoModel.from_pretrained(args.model, attn_implementation="eager").float()
    pairs = read_pairs(args.pairs, args.batch * (args.steps + 1))
    batches = [([e for e, _ in pairs[i:i + args.batch]], [r for _, r in pairs[i:i + args.batch]])
               for i in range(0, len(pairs), args.batch)]

    step = (run_importance if args.mode == "importance" else run_distill)(model, tok, batches, args)
    losses = [step(*batches[0])]  # warm-up
    t0 = time.perf_counter()
    for en, ru in batches[1:]:
        losses.append(step(en, ru))
    secs = time.perf_counter() - t0
    timed = len(batches) - 1
    print(json.dumps({
        "mode": args.mode, "impl": "pytorch",
        "student_mode": args.student_mode if args.mode == "distill" else "eval", "pairs_per_s": round(timed * args.batch / secs, 2),
        "sec_per_step": round(secs / timed, 3), "steps": timed, "batch": args.batch,
        "max_length": args.max_length, "param_grads": args.param_grads if args.mode == "importance" else True,
        "losses": [round(l, 4) for l in losses], "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()

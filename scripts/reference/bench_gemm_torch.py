"""GFLOP/s of PyTorch's f32 matmul (MKL on x86) at the shapes of crates/model/benches/gemm_peak.rs.

    /root/venvs/sekator-ref/bin/python scripts/reference/bench_gemm_torch.py
"""
import json
import statistics
import time

import torch

SHAPES = [(2048, 384, 384), (2048, 384, 1536), (2048, 1536, 384), (384, 2048, 1536)]


def seconds(m, k, n):
    lhs, rhs = torch.full((m, k), 0.5), torch.full((k, n), 0.25)
    out = lhs @ rhs
    runs = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(10):
            out = lhs @ rhs
        runs.append((time.perf_counter() - t) / 10)
    assert out[0, 0].item() == 0.125 * k
    return statistics.median(runs)


for threads in (1, 2):
    torch.set_num_threads(threads)
    for m, k, n in SHAPES:
        gflops = 2 * m * k * n / seconds(m, k, n) / 1e9
        print(json.dumps({"impl": "torch", "m": m, "k": k, "n": n, "threads": threads, "gflops": round(gflops, 1)}))

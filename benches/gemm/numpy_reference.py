"""NumPy's matrix products (OpenBLAS) on the shapes and products of `src/main.rs`, for reference.

The same X (the same integer hash, scaled to unit Frobenius norm), the same three products
written as a NumPy user writes them (with their temporaries), the same table; one process per
thread count, as OpenBLAS reads OPENBLAS_NUM_THREADS when NumPy loads. `X @ X.T` is a symmetric
rank-k update in OpenBLAS (one triangle, half the flops); its GFLOP/s count the full product's
flops like the other columns, so they are an effective rate.

Usage: python benches/gemm/numpy_reference.py [--threads 1,2] [--rounds 7]
       [--shapes 128x512,768x768,768x3072,1024x4096]
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np

NS_A, NS_B, NS_C = 3.4445, -4.7750, 2.0315
MIN_SAMPLE_S = 0.02


def inputs(dtype, m, n):
    """X as `src/main.rs` builds it, and A and B from it.

    Args:
        dtype: np.float32 or np.float64.
        m, n: X's shape, m <= n.
    """
    i = np.arange(m * n, dtype=np.uint64)
    raw = ((i * np.uint64(2_654_435_761)) % np.uint64(1 << 32)).astype(np.float64) / 2**32 - 0.5
    x = (raw / np.sqrt(np.sum(raw * raw))).astype(dtype).reshape(m, n)
    gram = x @ x.T
    return x, gram, NS_B * gram + NS_C * (gram @ gram)


def best_seconds(call, rounds):
    """Best seconds per call over `rounds` samples of calls looped for MIN_SAMPLE_S.

    Args:
        call: the product to time.
        rounds: the number of samples.
    """
    call()
    start = time.perf_counter()
    call()
    calls = max(1, min(1000, int(MIN_SAMPLE_S / (time.perf_counter() - start)) + 1))
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def table(threads, rounds, shapes):
    """Print the rows of one thread count (OPENBLAS_NUM_THREADS is already set).

    Args:
        threads: the thread count, for the table.
        rounds: samples per product.
        shapes: (m, n) pairs.
    """
    for dtype in (np.float32, np.float64):
        for m, n in shapes:
            x, gram, poly = inputs(dtype, m, n)
            steps = [
                ("A = X X^T", 2 * m * m * n, lambda x=x: x @ x.T),
                ("B = bA + cAA", 2 * m**3, lambda a=gram: NS_B * a + NS_C * (a @ a)),
                ("X' = aX + BX", 2 * m * m * n, lambda x=x, b=poly: NS_A * x + b @ x),
            ]
            prefix = f"| {threads} | {np.dtype(dtype).name} | {m}x{n} |"
            total, total_flops = 0.0, 0
            for name, flops, call in steps:
                seconds = best_seconds(call, rounds)
                total += seconds
                total_flops += flops
                print(f"{prefix} {name} | {flops / seconds / 1e9:.1f} |", flush=True)
            print(
                f"{prefix} iteration ({total * 1e3:.1f} ms) | "
                f"**{total_flops / total / 1e9:.1f}** |",
                flush=True,
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--shapes", default="128x512,768x768,768x3072,1024x4096")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    if args.child is not None:
        table(args.child, args.rounds, shapes)
        return
    print(
        f"NumPy {np.__version__} matmul, GFLOP/s (2 m^2 n or 2 m^3 flops), best of "
        f"{args.rounds} rounds.\n"
    )
    print("| threads | dtype | m x n | product | NumPy |")
    print("|---:|:---|:---|:---|---:|", flush=True)
    for threads in (t.strip() for t in args.threads.split(",")):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=threads)
        subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--child", threads], env=env, check=True
        )


if __name__ == "__main__":
    main()

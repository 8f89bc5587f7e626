"""How backward() scales with graph size: long chains and wide fan-out graphs.

  chain    y = x * c * c * ... * c                      n multiplications in a row (depth n)
  fan-out  y = x*c_1 + x*c_2 + ... + x*c_(n/2)         x feeds n/2 products, summed by a
                                                        balanced tree of n/2 - 1 additions

Each graph holds about n ops on scalars, so the time is all per-op overhead; linear scaling
means each 10x bigger graph takes 10x longer. Backward must not recurse (no RecursionError
at n = 10**6).

Run:  .venv/bin/python bench/scaling.py [--max-exp 6] [--rounds 9]
Prints the best of `--rounds` fresh graphs per size (10**6: best of two).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import gc  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course_lib.engine import Tensor  # noqa: E402


def chain(n):
    x = Tensor(1.0, requires_grad=True)
    y = x
    for _ in range(n):
        y = y * 1.0000001
    return x, y, 1.0000001**n


def fan_out(n):
    x = Tensor(1.0, requires_grad=True)
    terms = [x * float(i % 7) for i in range(n // 2)]
    while len(terms) > 1:  # pairwise sums: depth log2(n), so only the fan-out is wide
        terms = [a + b for a, b in zip(terms[::2], terms[1::2])] + terms[len(terms) // 2 * 2:]
    return x, terms[0], float(sum(i % 7 for i in range(n // 2)))


def time_once(build, n):
    """(build seconds, backward seconds) for one fresh graph of about n ops."""
    gc.collect()
    start = time.perf_counter()
    x, y, expected = build(n)
    built = time.perf_counter()
    y.backward()
    done = time.perf_counter()
    assert np.isclose(x.grad, expected, rtol=1e-6), (x.grad, expected)
    return built - start, done - built


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-exp", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    sizes = [10**k for k in range(3, args.max_exp + 1)]

    print(f"{'graph':8s} {'ops':>9s} {'build s':>9s} {'backward s':>11s} "
          f"{'us/op':>7s} {'x prev':>7s}")
    for name, build in [("chain", chain), ("fan-out", fan_out)]:
        best = {n: (float("inf"), float("inf")) for n in sizes}
        for r in range(args.rounds):
            # the sizes take turns, so a slow spell of the machine does not skew the ratios;
            # 10**6 ops take seconds: twice is enough for those
            for n in sizes if r < 2 else [n for n in sizes if n < 10**6]:
                best[n] = tuple(map(min, best[n], time_once(build, n)))
        previous = None
        for n in sizes:
            built, backward = best[n]
            ratio = f"{backward / previous:7.1f}" if previous else f"{'':7s}"
            us_per_op = 1e6 * backward / n
            print(f"{name:8s} {n:9,d} {built:9.3f} {backward:11.4f} {us_per_op:7.2f} {ratio}")
            previous = backward
    print("x prev: backward time over the previous size's (10x fewer ops); linear = 10,"
          " target <= 12 for 10**4 -> 10**5")


if __name__ == "__main__":
    main()

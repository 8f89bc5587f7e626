"""Training-step cost of course_lib's engine against hand-written numpy and torch eager.

The same MLP 1 -> 128 -> 128 -> 1 (ReLU), MSE loss, batch 8, plain SGD, the same initial
weights and the same batches, trained three ways in one run:

  numpy   forward and backward written out by hand: the floor any numpy engine pays
  torch   torch eager autograd, one thread
  engine  course_lib.engine.Tensor

Run:  .venv/bin/python bench/engine.py [--steps 3000] [--rounds 20]
First all three train `--steps` steps and must end with the same weights. Then they take
turns timing runs of 250 steps, `--rounds` times each; it prints each one's best
microseconds per step and the ratios.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread for all three, before numpy/torch load BLAS

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course_lib.engine import Tensor, sgd_step  # noqa: E402

torch.set_num_threads(1)

SIZES = (1, 128, 128, 1)
BATCH = 8
LR = 0.01


def make_problem(steps, seed=0):
    rng = np.random.default_rng(seed)
    weights = []
    for n_in, n_out in zip(SIZES[:-1], SIZES[1:]):
        bound = 1.0 / np.sqrt(n_in)
        weights += [rng.uniform(-bound, bound, (n_in, n_out)), rng.uniform(-bound, bound, n_out)]
    x = rng.uniform(0.0, 1.0, (steps, BATCH, 1))
    y = np.sin(6.0 * x)
    return weights, list(zip(x, y))


def train_numpy(weights, batches):
    W1, b1, W2, b2, W3, b3 = [w.copy() for w in weights]
    for x, y in batches:
        z1 = x @ W1 + b1
        h1 = np.maximum(z1, 0.0)
        z2 = h1 @ W2 + b2
        h2 = np.maximum(z2, 0.0)
        pred = h2 @ W3 + b3
        diff = pred - y
        loss = np.mean(diff**2)  # noqa: F841 (computed, as the other two do)
        g = 2.0 * diff / diff.size
        gW3, gb3 = h2.T @ g, g.sum(axis=0)
        g = (g @ W3.T) * (z2 > 0)
        gW2, gb2 = h1.T @ g, g.sum(axis=0)
        g = (g @ W2.T) * (z1 > 0)
        gW1, gb1 = x.T @ g, g.sum(axis=0)
        W1 -= LR * gW1
        b1 -= LR * gb1
        W2 -= LR * gW2
        b2 -= LR * gb2
        W3 -= LR * gW3
        b3 -= LR * gb3
    return [W1, b1, W2, b2, W3, b3]


def train_torch(weights, batches):
    params = [torch.tensor(w, requires_grad=True) for w in weights]
    W1, b1, W2, b2, W3, b3 = params
    batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in batches]
    for x, y in batches:
        h1 = torch.relu(x @ W1 + b1)
        h2 = torch.relu(h1 @ W2 + b2)
        loss = ((h2 @ W3 + b3 - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= LR * p.grad
                p.grad = None
    return [p.detach().numpy() for p in params]


def train_engine(weights, batches):
    params = [Tensor(w, requires_grad=True) for w in weights]
    W1, b1, W2, b2, W3, b3 = params
    for x, y in batches:
        h1 = (Tensor(x) @ W1 + b1).relu()
        h2 = (h1 @ W2 + b2).relu()
        loss = ((h2 @ W3 + b3 - y) ** 2).mean()
        loss.backward()
        sgd_step(params, LR)
    return [p.data for p in params]


def us_per_step(trainers, weights, batches, rounds, chunk=250):
    """Best time per step of each trainer over `rounds` runs of `chunk` steps.

    The trainers take turns run by run, so a slow spell of the machine hits all of them,
    and the best run of each is its speed when nothing got in the way.
    """
    best = {name: float("inf") for name in trainers}
    for r in range(rounds):
        start = (r * chunk) % max(len(batches) - chunk, 1)
        part = batches[start:start + chunk]
        for name, train in trainers.items():
            t0 = time.perf_counter()
            train(weights, part)
            best[name] = min(best[name], (time.perf_counter() - t0) / len(part))
    return {name: 1e6 * seconds for name, seconds in best.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    weights, batches = make_problem(args.steps)
    trainers = {"numpy": train_numpy, "torch": train_torch, "engine": train_engine}
    finals = [train(weights, batches) for train in trainers.values()]
    for other in finals[1:]:  # all three must train the same network to the same weights
        assert all(np.allclose(a, b, atol=1e-8) for a, b in zip(finals[0], other))

    t = us_per_step(trainers, weights, batches, args.rounds)
    print(f"MLP {' -> '.join(map(str, SIZES))}, ReLU, MSE, batch {BATCH}, SGD, 1 thread: "
          f"{args.steps} steps each, then best of {args.rounds} runs of 250 steps")
    for name, us in t.items():
        print(f"  {name:7s} {us:7.1f} us/step")
    print(f"  engine / numpy floor: {t['engine'] / t['numpy']:.2f}x  (target <= 2.5x)")
    print(f"  torch / engine:       {t['torch'] / t['engine']:.2f}x  (target >= 1.5x)")


if __name__ == "__main__":
    main()

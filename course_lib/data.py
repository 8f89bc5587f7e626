"""Small data sets used by the notebooks and tests, all generated or shipped (no downloads)."""
from __future__ import annotations

import os

import numpy as np


def wiggly_regression(n_train=200, n_test=100, noise=0.1, seed=0):
    """x ~ U[0, 1], y = cos(2x + 20x**2) + noise * N(0, 1): a wave that speeds up with x.

    Returns (x_train, y_train, x_test, y_test), each of shape (N, 1).
    """
    rng = np.random.default_rng(seed)

    def sample(n):
        x = rng.uniform(0.0, 1.0, size=(n, 1))
        y = np.cos(2.0 * x + 20.0 * x**2) + noise * rng.standard_normal((n, 1))
        return x, y

    x_train, y_train = sample(n_train)
    x_test, y_test = sample(n_test)
    return x_train, y_train, x_test, y_test


def load_digits_split(test_fraction=0.25, seed=0, standardize=True):
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes; no download).

    Returns (x_train, y_train, x_test, y_test): x float64 of shape (N, 64), labels int64 of
    shape (N,). The split is stratified (every digit in the same proportion on both sides)
    and fixed by `seed`. Pixels start in [0, 1] (the raw 0..16 intensities divided by 16);
    with `standardize=True` they are centred by the training set's per-pixel mean and divided
    by its overall standard deviation (one number, so rarely used pixels are not blown up).
    Test statistics are never used, so the held-out split stays held out.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y)
    if standardize:
        mean, scale = x_train.mean(axis=0), x_train.std()
        x_train, x_test = (x_train - mean) / scale, (x_test - mean) / scale
    return x_train, y_train, x_test, y_test


TEXTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "texts")


def load_text(name="nursery_rhymes"):
    """A short public-domain text that ships with the course (`course_lib/texts/<name>.txt`).

    `nursery_rhymes`: 26 traditional English nursery rhymes, lower case, typed for this course
    (about 3.8 KB, 31 distinct characters).
    """
    with open(os.path.join(TEXTS, f"{name}.txt"), encoding="utf-8") as f:
        return f.read()


def char_encoding(text):
    """(ids, chars): `ids` int64 (len(text),) indexes the sorted characters `chars` (a string)."""
    chars = "".join(sorted(set(text)))
    lookup = {c: i for i, c in enumerate(chars)}
    return np.array([lookup[c] for c in text], dtype=np.int64), chars


def text_batch(data, block, batch_size, rng):
    """`batch_size` random windows of `block` ids and, shifted by one, the ids that follow.

    Returns (ids, targets), both int64 (batch_size, block): targets[b, t] = data[s_b + t + 1].
    """
    starts = rng.integers(0, len(data) - block, size=batch_size)
    windows = starts[:, None] + np.arange(block)               # (batch_size, block)
    return data[windows], data[windows + 1]

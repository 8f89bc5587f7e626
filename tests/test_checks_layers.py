"""course_lib.checks.layers (notebook 03's checks): nudges stay formula-free, the hidden tests'
explanations name the formula, and the MLP check points at the layer where a bug sits (fast:
no kernel, no notebook)."""
from __future__ import annotations

import numpy as np
import pytest

from course_lib.checks import GradeError, suite
from course_lib.checks import layers as L
from test_visible_hints import FORMULA


def test_nudges_give_no_formula_away_and_explanations_cover_the_same_parts():
    found = [f"{name}[{part}]: {text!r}" for name, parts in L.NUDGES.items()
             for part, text in parts.items() if FORMULA.search(text)]
    assert not found, found
    assert {n: set(p) for n, p in L.NUDGES.items()} == \
        {n: set(p) for n, p in L.EXPLAINED.items()}
    assert FORMULA.search(L.EXPLAINED["affine"]["x"]) and FORMULA.search(L.layer_hint(0, 2, True))
    assert not FORMULA.search(L.layer_hint(0, 2)) and not FORMULA.search(L.layer_hint(1, 2))


def _student(fn):
    fn.__module__ = "__main__"  # graded functions must come from the notebook
    return fn


def _mlp(mask_in_backward=True):
    """A numpy MLP (ReLU between affine layers, mean cross-entropy); optionally without the
    ReLU mask on the way back, the typical slip."""
    def mlp_loss_and_grads(params, x, labels):
        hs, h = [x], x
        for i, (W, b) in enumerate(params):
            h = h @ W + b
            h = np.maximum(h, 0.0) if i < len(params) - 1 else h
            hs.append(h)
        z = h - h.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        n = len(labels)
        g = np.exp(logp)
        g[np.arange(n), labels] -= 1.0
        g /= n
        grads = []
        for i in reversed(range(len(params))):
            W = params[i][0]
            grads.append((hs[i].T @ g, g.sum(axis=0)))
            g = g @ W.T
            if i > 0 and mask_in_backward:
                g = g * (hs[i] > 0)
        return float(-logp[np.arange(n), labels].mean()), grads[::-1]
    return _student(mlp_loss_and_grads)


def test_a_correct_mlp_passes_and_a_missing_relu_mask_is_placed_between_its_layers():
    with suite("test_mlp_loss_and_grads") as t:
        L.check_mlp(t, _mlp(), [4, 5, 3], rows=6)
    with pytest.raises(GradeError) as info, suite("test_mlp_loss_and_grads") as t:
        L.check_mlp(t, _mlp(mask_in_backward=False), [4, 5, 3], rows=6, explain=True)
    text = str(info.value)
    assert "gradient of W1 (layer 1 of 2)" in text, text
    assert "layer 2's gradients are right" in text and "gx = g @ W.T" in text, text


def test_grads_of_the_wrong_structure_are_described_with_their_items():
    wrong = _student(lambda params, x, labels: (1.0, [params[0][0]]))
    with pytest.raises(GradeError) as info, suite("test_mlp_loss_and_grads") as t:
        L.check_mlp(t, wrong, [3, 2], rows=4)
    text = str(info.value)
    assert "loss" in text and "is wrong" in text, text  # the loss is checked first
    right_loss = _student(lambda params, x, labels: (_mlp()(params, x, labels)[0], [params[0][0]]))
    with pytest.raises(GradeError) as info, suite("test_mlp_loss_and_grads") as t:
        L.check_mlp(t, right_loss, [3, 2], rows=4)
    assert "a list of 1 (gW, gb) pairs" in str(info.value), info.value
    assert "a list of 1 items (an array of shape (3, 2))" in str(info.value), info.value


def test_the_shifted_class_makes_log_softmax_underflow():
    """correct_shift moves each row's label logit 1000 below: a log(softmax) that is right
    elsewhere fails there."""
    def naive(logits, labels):
        n = len(labels)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        onehot = np.eye(logits.shape[1])[labels]
        return float(-np.log(p[np.arange(n), labels]).mean()), lambda g=1.0: g * (p - onehot) / n
    with suite("test_softmax_cross_entropy_hidden") as t:
        with pytest.raises(GradeError) as info:
            L.check_cross_entropy(t, _student(naive), 5, 4, correct_shift=-1000.0, explain=True)
    assert "softmax_cross_entropy: forward output" in str(info.value), info.value
    assert "log(softmax)" in str(info.value), info.value

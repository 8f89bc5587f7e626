"""Notebook 03: the reference keeps full marks; typical wrong answers lose points and are told why."""
import pytest

from harness import mutate, read, replace_cell, run_in_process, source_path, total

SOURCE = read(source_path("03_mlp_backward"))


@pytest.fixture(scope="module")
def reference():
    return run_in_process(SOURCE, skip_untagged=True)


def test_reference_gets_full_marks(reference):
    earned, possible = total(reference)
    assert earned == possible > 0, {k: v[2] for k, v in reference.items() if v[2]}


def _solution(gid):
    return next(c for c in SOURCE.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)


def _answer(gid):
    return _solution(gid).source.partition("### BEGIN SOLUTION")[2]


MISTAKES = [
    # (solution cell, text in its answer, replacement, failing test, words in the message)
    ("affine", "x.T @ g", "g.T @ x", "test_affine", ["transpose"]),
    ("affine", "g.sum(axis=0)", "g.sum(axis=1)", "test_affine", ["expected shape"]),
    ("affine", "g @ w.T", "g @ w", "test_affine", ["shape", "matmul"]),
]


@pytest.mark.parametrize("gid, old, new, test, words", MISTAKES)
def test_typical_mistake_loses_points(reference, gid, old, new, test, words):
    if old not in _answer(gid):
        pytest.fail(f"{old!r} is not in the {gid} solution any more: update this test")
    scores = run_in_process(mutate(SOURCE, gid, old, new), skip_untagged=True)
    assert total(scores)[0] < total(reference)[0]
    score, _, error = scores[test]
    assert score == 0 and error
    assert any(w.lower() in error.lower() for w in words), error


def _replace(gid, body):
    head = _solution(gid).source.partition("### BEGIN SOLUTION")[0]
    return replace_cell(SOURCE, gid, head.rstrip(" ") + body.strip("\n"))


WRONG_BODIES = {
    "relu_without_mask": ("relu", """
    y = np.maximum(x, 0)

    def vjp(g):
        return g

    return y, vjp
"""),
    "sigmoid_naive_derivative": ("sigmoid", """
    y = 1 / (1 + np.exp(-x))

    def vjp(g):
        return g * np.exp(x) / (1 + np.exp(x)) ** 2

    return y, vjp
"""),
    "tanh_missing_square": ("tanh", """
    y = np.tanh(x)

    def vjp(g):
        return g * (1 - y)

    return y, vjp
"""),
    "mse_missing_mean": ("mse_loss", """
    diff = pred - target
    loss = float(np.sum(diff ** 2))

    def vjp(g=1.0):
        return g * 2 * diff

    return loss, vjp
"""),
    "softmax_unstable": ("softmax_cross_entropy", """
    n = logits.shape[0]
    e = np.exp(logits)
    p = e / e.sum(axis=1, keepdims=True)
    loss = float(-np.mean(np.log(p[np.arange(n), labels])))

    def vjp(g=1.0):
        d = p.copy()
        d[np.arange(n), labels] -= 1
        return g * d / n

    return loss, vjp
"""),
    "softmax_missing_mean": ("softmax_cross_entropy", """
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = float(-np.sum(logp[np.arange(n), labels]))

    def vjp(g=1.0):
        d = np.exp(logp)
        d[np.arange(n), labels] -= 1
        return g * d

    return loss, vjp
"""),
    "torch_autograd_shortcut": ("affine", """
    import torch
    y = x @ w + b

    def vjp(g):
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        (tx @ tw + tb).backward(torch.tensor(g))
        return tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()

    return y, vjp
"""),
}

EXPECTED_WORDS = {
    "relu_without_mask": ["relu"], "sigmoid_naive_derivative": ["sigmoid"],
    "tanh_missing_square": ["tanh"], "mse_missing_mean": ["mse_loss"],
    "softmax_unstable": ["softmax_cross_entropy"], "softmax_missing_mean": ["softmax_cross_entropy"],
    "torch_autograd_shortcut": ["compute the gradient yourself"],
}


@pytest.mark.parametrize("name", sorted(WRONG_BODIES))
def test_wrong_implementation_loses_points(reference, name):
    gid, body = WRONG_BODIES[name]
    scores = run_in_process(_replace(gid, body), skip_untagged=True)
    assert total(scores)[0] < total(reference)[0]
    errors = " ".join(v[2] for v in scores.values() if v[2])
    assert "is not defined" not in errors, errors[:300]
    assert all(w.lower() in errors.lower() for w in EXPECTED_WORDS[name]), errors[:500]


def test_a_reference_imported_from_course_lib_earns_nothing(reference):
    nb = replace_cell(SOURCE, "affine", "from course_lib.ops import affine")
    scores = run_in_process(nb, skip_untagged=True)
    assert scores["test_affine"][0] == 0 and scores["test_affine_hidden"][0] == 0
    assert "this notebook" in scores["test_affine"][2]

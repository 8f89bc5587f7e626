"""Notebook 03: the reference keeps full marks; typical wrong answers lose points and are told why."""
import re

import pytest

from harness import Mistake, assert_caught, read, replace_cell, run_in_process, source_path

SOURCE = read(source_path("03_mlp_backward"))


AFFINE = ["test_affine", "test_affine_hidden"]
MLP = frozenset({"test_mlp_loss_and_grads", "test_mlp_loss_and_grads_hidden"})  # built on all
ANSWER = re.compile(r" *### BEGIN SOLUTION.*", re.S)  # a solution cell's answer, to the end


def answer_replaced(id, gid, body, failing, words, also=()):
    """A mistake that replaces the answer of solution cell `gid` with `body`."""
    return Mistake(id, [(gid, ANSWER, body.strip("\n"))], failing, words, frozenset(also))


MISTAKES = [
    # (id, [(solution cell, old, new)], failing tests, words in their messages, cells built on it)
    Mistake("affine_xT_g_swapped", [("affine", "x.T @ g", "g.T @ x")], AFFINE, ["transpose"], MLP),
    Mistake("affine_b_wrong_axis", [("affine", "g.sum(axis=0)", "g.sum(axis=1)")], AFFINE,
            ["expected shape"], MLP),
    Mistake("affine_gx_not_transposed", [("affine", "g @ w.T", "g @ w")], AFFINE, ["matmul"], MLP),
]

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

# a vjp that writes into the g it was given (the values are right): the rule of the notebook
WRONG_BODIES["relu_writes_into_g"] = ("relu", """
    y = np.maximum(x, 0.0)

    def vjp(upstream):
        grad_in = upstream
        grad_in[x <= 0] = 0.0
        return grad_in

    return y, vjp
""")
WRONG_BODIES["relu_masks_g_itself"] = ("relu", """
    negative = x <= 0
    y = np.where(negative, 0.0, x)

    def vjp(upstream):
        upstream[negative] = 0.0
        return upstream

    return y, vjp
""")
WRONG_BODIES["affine_b_keepdims"] = ("affine", """
    y = x @ w + b

    def vjp(g):
        return g @ w.T, x.T @ g, g.sum(axis=0, keepdims=True)

    return y, vjp
""")
WRONG_BODIES["affine_gx_zeros"] = ("affine", """
    y = x @ w + b

    def vjp(g):
        return np.zeros_like(x), x.T @ g, g.sum(axis=0)

    return y, vjp
""")
IN_PLACE_WORDS = ["modified g", "must not modify g", "out of place", "copy()"]

# (failing tests, words in their messages, cells built on it that fail too)
EXPECTED = {
    "relu_writes_into_g": (["test_relu", "test_relu_hidden"], IN_PLACE_WORDS, ()),
    "relu_masks_g_itself": (["test_relu", "test_relu_hidden"], IN_PLACE_WORDS, ()),
    "affine_b_keepdims": ([*AFFINE, *sorted(MLP)], ["keepdims=True left an axis of size 1"], ()),
    "affine_gx_zeros": ([*AFFINE], ["all zeros", "g multiplied in"], MLP),
    "relu_without_mask": (["test_relu", "test_relu_hidden", *sorted(MLP)], ["relu"], ()),
    "sigmoid_naive_derivative": (["test_sigmoid_hidden", "test_sigmoid_stable"], ["sigmoid"], ()),
    "tanh_missing_square": (["test_tanh", "test_tanh_hidden"], ["tanh"], ()),
    "mse_missing_mean": (["test_mse_loss", "test_mse_loss_hidden"], ["mse_loss"], ()),
    "softmax_unstable": (["test_softmax_cross_entropy_hidden", "test_softmax_cross_entropy_stable"],
                         ["softmax_cross_entropy"], ()),
    "softmax_missing_mean": (["test_softmax_cross_entropy", "test_softmax_cross_entropy_hidden",
                              "test_softmax_cross_entropy_stable"], ["softmax_cross_entropy"], MLP),
    "torch_autograd_shortcut": ([*AFFINE, *sorted(MLP)], ["compute the gradient yourself"], ()),
}
MISTAKES += [answer_replaced(name, gid, source, *EXPECTED[name])
             for name, (gid, source) in WRONG_BODIES.items()]


@pytest.mark.parametrize("mistake", MISTAKES, ids=str)
def test_typical_mistake_loses_points(mistake):
    failed = assert_caught(mistake, run_in_process(mistake.applied(SOURCE), skip_untagged=True))
    assert not any("is not defined" in error for error in failed.values()), failed


def test_a_reference_imported_from_course_lib_earns_nothing():
    nb = replace_cell(SOURCE, "affine", "from course_lib.ops import affine")
    scores = run_in_process(nb, skip_untagged=True)
    assert scores["test_affine"][0] == 0 and scores["test_affine_hidden"][0] == 0
    assert "this notebook" in scores["test_affine"][2]


# correct answers in other common styles: each keeps full marks, the () case included
ALTERNATIVES = {
    "relu_copy_then_mask": """
    y = np.maximum(x, 0.0)

    def vjp(upstream):
        grad_in = upstream.copy()
        grad_in[x <= 0] = 0.0
        return grad_in

    return y, vjp
""",
    "relu_where": """
    y = np.where(x > 0, x, 0.0)
    return y, lambda upstream: np.where(x > 0, upstream, 0.0)
""",
}


@pytest.mark.parametrize("name", sorted(ALTERNATIVES))
def test_other_correct_relu_keeps_full_marks(name):
    nb = Mistake(name, [("relu", ANSWER, ALTERNATIVES[name].strip("\n"))], [], []).applied(SOURCE)
    scores = run_in_process(nb, skip_untagged=True)
    for gid in ("test_relu", "test_relu_hidden"):
        assert scores[gid][0] == scores[gid][1], scores[gid]


def _relu_verdicts(body):
    """test_relu_hidden under the grader (student code behind the channel) and in the kernel."""
    from course_lib.checks import GradeError, InKernel, reaching
    from harness import ChannelKernel, cell_by_id
    code = "import numpy as np\ndef relu(x):\n" + body.strip("\n") + "\n"
    source = cell_by_id(SOURCE, "test_relu_hidden").source
    namespace = {"__name__": "__main__"}
    exec(code, namespace)
    try:
        with reaching(InKernel()):
            exec(compile(source, "test", "exec"), namespace)
        in_kernel = None
    except GradeError as e:
        in_kernel = str(e)
    kernel = ChannelKernel(code)
    try:
        return in_kernel, kernel.verdict(source)
    finally:
        kernel.close()


def test_writing_into_g_is_caught_under_both_graders():
    """Under the grader g crosses the channel: the kernel's write into it comes back."""
    in_kernel, verdict = _relu_verdicts(WRONG_BODIES["relu_writes_into_g"][1])
    assert not verdict.passed and in_kernel == verdict.message, (in_kernel, verdict.message)
    assert "must not modify g" in verdict.message
    in_kernel, verdict = _relu_verdicts(ALTERNATIVES["relu_copy_then_mask"])
    assert verdict.passed and in_kernel is None, (in_kernel, verdict.message)

"""The layer checks of notebook 05 (`course_lib.checks.transformer`): a visible test's hints name
the idea and a hidden one's the formula; a typical mistake gets its hint; an argument a test
leaves out is not sent (the learner's default is what is tested); `random_ids` draws as the
test cells used to."""
import numpy as np
import pytest

from course_lib.checks import GradeError, suite
from course_lib.checks import transformer as TC
from test_visible_hints import FORMULA


def own(fn):
    """`fn` as if defined in a notebook: graded functions must come from `__main__`."""
    fn.__module__ = "__main__"
    return fn


@own
def softmax(x, axis=-1):
    y = np.exp(x - x.max(axis=axis, keepdims=True))
    y = y / y.sum(axis=axis, keepdims=True)
    return y, lambda g: y * (g - (g * y).sum(axis=axis, keepdims=True))


@own
def softmax_without_subtracted_term(x, axis=-1):
    y, _ = softmax(x, axis)
    return y, lambda g: y * g


@own
def attention_without_causal(q, k, v):
    """Attention with no `causal` parameter at all: the default case must still reach it."""
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    p, p_vjp = softmax(s)

    def vjp(g):
        gs = p_vjp(g @ np.swapaxes(v, -1, -2)) / np.sqrt(q.shape[-1])
        return gs @ k, np.swapaxes(gs, -1, -2) @ q, np.swapaxes(p, -1, -2) @ g
    return p @ v, vjp


@pytest.mark.parametrize("layer", sorted(TC.HINTS))
def test_visible_hints_name_the_idea_and_explicit_ones_the_formula(layer):
    visible, explain = TC.hints_for(layer), TC.hints_for(layer, explain=True)
    assert set(visible) == set(explain)
    assert not [h for h in visible.values() if FORMULA.search(h)], visible
    assert any(FORMULA.search(h) for h in explain.values()), explain


def test_a_missing_subtracted_term_gets_its_hint_and_the_formula_only_when_explicit():
    for explain in (False, True):
        with pytest.raises(GradeError) as caught, suite("test_softmax") as t:
            TC.check_softmax(t, softmax_without_subtracted_term, t.randn(3, 4), explain=explain)
        message = str(caught.value)
        assert "gradient with respect to x" in message and "subtracted term" in message, message
        assert ("gx = y * (g - (g * y).sum(axis=axis" in message) == explain, message


def test_the_right_answers_pass_and_a_left_out_argument_is_not_sent():
    with suite("test_attention") as t:
        TC.check_softmax(t, softmax, t.randn(2, 3, 4), axis=1)
        TC.check_attention(t, attention_without_causal, t.randn(2, 3, 4), t.randn(2, 5, 4),
                           t.randn(2, 5, 3))
    with pytest.raises(GradeError, match="causal"), suite("test_attention_causal") as t:
        TC.check_attention(t, attention_without_causal, t.randn(3, 2), t.randn(3, 2),
                           t.randn(3, 2), causal=True)


def test_random_ids_draws_ids_then_targets_from_the_suite():
    with suite("test_block_loss_and_grads") as t:
        ids, targets = TC.random_ids(t, batch=2, length=6, vocab=5)
        t.probes = 1  # no student code in this test
    with suite("test_block_loss_and_grads") as t:
        before = t.labels(12, 5).reshape(2, 6), t.labels(12, 5).reshape(2, 6)
        t.probes = 1
    assert ids.shape == targets.shape == (2, 6) and ids.dtype == np.int64
    np.testing.assert_array_equal(ids, before[0])
    np.testing.assert_array_equal(targets, before[1])

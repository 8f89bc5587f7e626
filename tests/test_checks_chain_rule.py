"""course_lib.checks.chain_rule: the checks of notebook 01 name the mistake made, nudge in the
visible tests (no formula) and explain in the hidden ones (explain=True)."""
import numpy as np
import pytest

from course_lib.checks import GradeError, InKernel, reaching, suite
from course_lib.checks import chain_rule
from test_visible_hints import FORMULA


def own(fn, name="central_difference"):
    """`fn` as if the learner had defined it in the notebook as `name`."""
    fn.__module__, fn.__name__ = "__main__", name
    return fn


def message(check, *args, **kwargs):
    """The GradeError text `check(t, ...)` raises in a fresh suite (None when it passes)."""
    with reaching(InKernel()):
        try:
            with suite("test_checks_chain_rule") as t:
                check(t, *args, **kwargs)
        except GradeError as e:
            return str(e)
    return None


NUDGES_AND_EXPLANATIONS = [chain_rule.FD_HINT, chain_rule.DY_DX_HINT,
                           chain_rule.SOFTMAX_CE_HINT, *chain_rule.ACTIVATION_HINTS.values(),
                           *[m for _, m in chain_rule.FD_MISTAKES if not isinstance(m, str)]]


@pytest.mark.parametrize("nudge,explanation", NUDGES_AND_EXPLANATIONS)
def test_visible_nudges_give_no_formula_away_hidden_explanations_do(nudge, explanation):
    assert not FORMULA.search(nudge), nudge
    assert FORMULA.search(explanation) or "=" in explanation, explanation


@pytest.mark.parametrize("wrong,words", [
    (lambda f, x, h: (f(x + h) - f(x)) / h, "(forward) difference"),
    (lambda f, x, h: (f(x) - f(x - h)) / h, "(backward) difference"),
    (lambda f, x, h: (f(x + h) - f(x - h)) / h, "not by h"),
    (lambda f, x, h: (f(x + 1e-5) - f(x - 1e-5)) / 2e-5, "not a fixed 1e-5"),
    (lambda f, x, h: f(x) / h, "central difference"),
])
def test_a_wrong_central_difference_is_named(wrong, words):
    cd = own(lambda f, x, h=1e-5: wrong(f, x, h))
    text = message(chain_rule.check_central_difference, cd, "np.exp", np.exp, 0.3,
                   np.exp(0.3) * (1 + 0.01 / 6), h=0.1)
    assert text.startswith("central_difference(np.exp, 0.3, h=0.1): expected 1.35")
    assert words in text, text


def test_the_hidden_test_writes_the_formula_out():
    forward = own(lambda f, x, h=1e-5: (f(x + h) - f(x)) / h)
    args = (forward, "np.sin", np.sin, 1.0, np.cos(1.0))
    assert "(f(x+h) - f(x)) / h" not in message(chain_rule.check_central_difference, *args)
    assert "(f(x+h) - f(x)) / h" in message(chain_rule.check_central_difference, *args,
                                            explain=True)
    right = own(lambda f, x, h=1e-5: (f(x + h) - f(x - h)) / (2 * h))
    assert message(chain_rule.check_central_difference, right, *args[1:]) is None


def test_an_activation_derivative_gets_the_hint_for_its_test():
    sigmoid_grad = own(lambda x: (lambda s: s * (1 + s))(1 / (1 + np.exp(-x))), "sigmoid_grad")
    x = np.array([-2.0, 0.0, 0.5, 3.0])
    nudge = message(chain_rule.check_activation_grad, sigmoid_grad, "sigmoid", x)
    rule = message(chain_rule.check_activation_grad, sigmoid_grad, "sigmoid", x, explain=True)
    assert nudge.startswith("sigmoid_grad: result is wrong at index")
    assert chain_rule.ACTIVATION_HINTS["sigmoid"][0] in nudge and "s * (1 - s)" not in nudge
    assert chain_rule.ACTIVATION_HINTS["sigmoid"][1] in rule


def test_an_overflow_at_large_inputs_is_told_as_overflow():
    naive = own(lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2, "sigmoid_grad")
    text = message(chain_rule.check_activation_grad, naive, "sigmoid",
                   np.array([[-1000.0, 1000.0], [-40.0, 40.0]]), explain=True)
    assert text.startswith("sigmoid_grad: result at large |x| (up to 1000): got nan")
    assert "overflowed" in text and "s * (1 - s)" not in text
    text = message(chain_rule.check_activation_grad, naive, "sigmoid", np.array(-1000.0))
    assert "result at x = -1000 (0-d)" in text


def test_a_softmax_message_says_which_target_and_size():
    p_only = own(lambda z, y: np.exp(z - z.max()) / np.exp(z - z.max()).sum(), "softmax_ce_grad")
    text = message(chain_rule.check_softmax_ce_grad, p_only, np.array([0.5, -1.0, 2.0, 0.0]),
                   np.array([0.1, 0.2, 0.3, 0.4]))
    assert text.startswith("softmax_ce_grad: result for K = 4, probability vector y is wrong")
    assert chain_rule.SOFTMAX_CE_HINT[0] in text
    unstable = own(lambda z, y: np.exp(z) / np.exp(z).sum() - y, "softmax_ce_grad")
    text = message(chain_rule.check_softmax_ce_grad, unstable, np.array([1000.0, 0.0, -1000.0]),
                   np.array([0.0, 0.0, 1.0]), explain=True)
    assert "large logits (|z| up to 1000), one-hot y" in text and "overflowed" in text
    assert chain_rule.SOFTMAX_CE_HINT[1] not in text


def test_targets_are_a_one_hot_and_a_probability_vector():
    with reaching(InKernel()), suite("test_checks_chain_rule") as t:
        one_hot, probabilities = chain_rule.targets(t, 6)
        t.probes = 1                                  # no student code in this test
    assert sorted(one_hot) == [0.0] * 5 + [1.0]
    assert np.all(probabilities > 0) and np.isclose(probabilities.sum(), 1.0)

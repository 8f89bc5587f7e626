"""The hints of `assert_close` and `check_vjp`, one rule per test (fast: no kernel, no notebook).

Order: a recognised mistake first (all zeros, sign, transpose, keepdims, a factor shared by
several elements), then the exercise's own hint; digits enough to show the difference."""
from __future__ import annotations

import numpy as np
import pytest

from course_lib.checks import GradeError, assert_close, suite
from course_lib.checks.core import as_gradient, distinct_numbers, value_hint

E = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.5]])
OWN = "the exercise's own hint"


def message(received, expected=E, **kwargs):
    with pytest.raises(GradeError) as info:
        assert_close(received, expected, what="f: gradient", **kwargs)
    return str(info.value)


def test_all_zeros_comes_before_any_factor():
    text = message(np.zeros_like(E), hint=OWN)
    assert "all zeros" in text and "factor" not in text
    assert text.index("all zeros") < text.index(OWN)


def test_a_flipped_sign_is_named_for_arrays_and_numbers():
    assert "sign is flipped" in message(-E)
    assert "sign is flipped" in message(np.array(-2.5), np.array(2.5))


def test_a_square_transpose_is_named():
    e = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert "transpose of the right answer" in message(e.T, e)


@pytest.mark.parametrize("shape", [(1, 3), (3, 1)])
def test_keepdims_is_named_when_an_axis_of_size_1_is_left(shape):
    text = message(np.ones(shape), np.ones(3), hint=OWN)
    assert "keepdims=True left an axis of size 1" in text and "reshape or transpose" not in text
    assert text.index("keepdims") < text.index(OWN)


def test_a_transposed_shape_is_named():
    assert "the shape is transposed" in message(np.ones((3, 2)))


def test_a_factor_needs_several_elements_sharing_it():
    assert "factor 1.7 (every element)" in message(1.7 * E)
    text = message(np.array(2.07287), np.array(2.41834), hint=OWN)
    assert "factor" not in text and OWN in text
    one_nonzero = np.array([0.0, 0.0, 2.0])
    assert value_hint(1.3 * one_nonzero, one_nonzero) is None


def test_the_factor_of_a_mean_names_the_mean():
    assert "6 times too large" in message(6 * E, context={"x": np.ones(6)})


def test_the_exercise_hint_follows_a_recognised_mistake_and_stands_alone_otherwise():
    assert message(2 * E, hint=OWN).endswith(f"Also: {OWN}")
    wrong = E + np.array([[0.0, 0.1, 0.0], [0.0, 0.0, 0.3]])
    assert message(wrong, hint=OWN).endswith(f"Hint: {OWN}")


def test_the_exercise_hint_applies_to_shape_errors():
    text = message(np.ones((4, 3)), np.ones((3,)), hint=OWN)
    assert f"Hint: {OWN}" in text and "Also: this input was broadcast" in text


def test_enough_digits_to_see_the_difference():
    expected, received = 1.3730701, 1.3730722      # the same to 6 digits, e.g. log(y + 1e-7)
    text = message(np.array(received), np.array(expected))
    assert "expected 1.3730701, received 1.3730722" in text, text
    assert distinct_numbers(1.5, 2.5) == ("1.5", "2.5")


def test_gradients_are_float64_arrays_never_numpy_scalars():
    g = as_gradient(np.float64(1.5))
    assert type(g) is np.ndarray and g.shape == () and g.dtype == np.float64
    with suite("test_hints_cotangent") as t:
        t.run(lambda: None)
        assert type(t.cotangent(())) is np.ndarray and t.cotangent(()).shape == ()


def _own(fn):
    fn.__module__ = "__main__"  # graded functions must come from the notebook
    return fn


def check_vjp_message(f, inputs, **kwargs):
    with pytest.raises(GradeError) as info, suite("test_hints_vjp") as t:
        t.check_vjp(_own(f), lambda x, *_: x * 2, inputs, grads=["x"], **kwargs)
    return str(info.value)


def test_a_vjp_writing_into_g_is_told_the_rule():
    def double(x, causal=False):
        def vjp(g):
            g *= 2
            return g
        return x * 2, vjp
    for shape in [(3,), ()]:
        text = check_vjp_message(double, {"x": np.ones(shape) + 0.5, "causal": False})
        assert "must not modify g" in text and "out of place" in text, text


def test_code_that_raises_is_told_its_inputs_and_keywords():
    def broken(x, causal=False):
        return x @ x.T.reshape(-1), None
    text = check_vjp_message(broken, {"x": np.ones((2, 3)), "causal": True},
                             hints={"out": OWN})
    assert "in the forward pass" in text and "x of shape (2, 3)" in text
    assert "causal=True" in text and text.endswith(f"Hint: {OWN}")

    def vjp_raises(x, causal=False):
        return x * 2, lambda g: g @ np.ones((5, 5))
    text = check_vjp_message(vjp_raises, {"x": np.ones((2, 3)), "causal": False},
                             hints={"out": OWN})
    assert "in vjp(g), with g of shape (2, 3)" in text and OWN not in text

"""The tiny transformer of notebook 05: the torch twin and the ops-built numpy block agree."""
import numpy as np
import pytest

from course_lib import transformer
from course_lib.data import char_encoding, load_text, text_batch


@pytest.mark.parametrize("batch, length", [(3, 8), (1, 5), (2, 1)])
def test_numpy_reference_matches_the_torch_twin(batch, length):
    rng = np.random.default_rng(batch * 10 + length)
    params = transformer.init_params(7, 8, 6, 5, rng)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in params.items()}
    ids, targets = rng.integers(0, 7, (batch, length)), rng.integers(0, 7, (batch, length))
    loss, grads = transformer.reference_loss_and_grads(params, ids, targets)
    want_loss, want = transformer.torch_loss_and_grads(params, ids, targets)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    assert list(grads) == list(transformer.KEYS) == list(want)
    for k in transformer.KEYS:
        assert grads[k].shape == params[k].shape
        np.testing.assert_allclose(grads[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)
    if length < 8:
        assert not np.any(grads["pos"][length:])


def test_initial_loss_is_about_log_vocab():
    data, chars = char_encoding(load_text())
    params = transformer.init_params(len(chars), 16, 16, 32, np.random.default_rng(0))
    ids, targets = text_batch(data, 16, 8, np.random.default_rng(1))
    assert abs(transformer.torch_eval_loss(params, ids, targets) - np.log(len(chars))) < 0.2


def test_the_shipped_text_and_its_encoding():
    text = load_text()
    data, chars = char_encoding(text)
    assert 2_000 < len(text) < 10_000 and len(chars) == 31 and data.dtype == np.int64
    assert "".join(chars[i] for i in data) == text
    ids, targets = text_batch(data, 12, 4, np.random.default_rng(0))
    assert ids.shape == targets.shape == (4, 12)
    np.testing.assert_array_equal(ids[:, 1:], targets[:, :-1])


def test_torch_train_lowers_the_loss():
    data, chars = char_encoding(load_text())
    params = transformer.init_params(len(chars), 8, 8, 16, np.random.default_rng(0))
    trained, losses = transformer.torch_train(params, data, 30, 0.02, 8, seed=0)
    assert len(losses) == 30 and losses[-1] < losses[0] - 0.3
    assert set(trained) == set(params) and not np.array_equal(trained["Wq"], params["Wq"])

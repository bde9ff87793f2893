"""Adaptive length from per-image errors: the stopping rule, its monotonicity, the savings."""

import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vle_kit.adaptive import evaluate_adaptive, lengths_by_masks, lengths_for

errors = st.integers(1, 6).flatmap(lambda k: arrays(
    "float32", st.tuples(st.integers(1, 5), st.just(k + 1)),
    elements=st.floats(0, 1, width=32))).map(torch.from_numpy)


@given(errors, st.floats(0, 1), st.floats(0, 1))
def test_a_looser_threshold_never_gives_more_tokens(mse, a, b):
    tight, loose = sorted((a, b))
    assert (lengths_for(mse, loose) <= lengths_for(mse, tight)).all()


@given(errors, st.floats(0, 1))
def test_each_image_meets_the_threshold_at_its_length_or_used_every_token(mse, threshold):
    lengths = lengths_for(mse, threshold)
    k = mse.shape[1] - 1
    at_length = mse[torch.arange(len(mse)), lengths]
    assert ((at_length <= threshold) | (lengths == k)).all()
    for i, n in enumerate(lengths.tolist()):  # and no earlier token met it
        assert (mse[i, 1:n] > threshold).all()


def test_an_image_stops_before_its_first_empty_mask():
    masks = torch.zeros(2, 4, 1, 10, 10)
    masks[0, :2] = 1  # two non-empty masks, then empty ones
    masks[1] = 1  # never empty
    assert lengths_by_masks(masks, 0.005).tolist() == [2, 4]


def test_savings_count_the_tokens_adaptive_length_needs():
    # half the images are done after one token, half need all four
    mse = torch.tensor([[1.0, 0.01, 0.01, 0.01, 0.01]] * 10 + [[1.0, 0.5, 0.3, 0.2, 0.01]] * 10)
    ssim = torch.ones(20, 4)
    result = evaluate_adaptive(mse, ssim, mse, torch.zeros(20, 3, 4, 4, dtype=torch.uint8),
                               None, None)
    four = result.savings[3]
    assert abs(four.max_error - 0.01) < 1e-6 and four.mean_tokens == 2.5 and four.saved == 0.375
    assert result.complexity == "png_bytes"

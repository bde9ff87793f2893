"""FG-ARI against scikit-learn, and its edge cases; count and collapse measures."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from vle_kit.decomposition import (
    collapse_share,
    count_accuracy,
    count_errors,
    fg_ari,
    label_tells_token,
    merged_share,
    missed_pixels,
    resumed_share,
    winners,
)


def _with_leftover(masks: torch.Tensor) -> torch.Tensor:
    """(N, K, 1, H, W) masks -> (N, K + 1, 1, H, W): the last is what no mask claimed."""
    return torch.cat([masks, (1 - masks.sum(1, keepdim=True)).clamp_min(0)], 1)


@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(1, 3),
       st.sampled_from([1.0, 0.5, 0.25]))
def test_winners_is_the_argmax_over_the_masks_and_the_leftover(seed, k, n, quantum):
    """Coarse values make ties common: they go to the first mask, a mask before the leftover."""
    rng = np.random.default_rng(seed)
    masks = torch.from_numpy(rng.random((n, k, 1, 5, 5), dtype=np.float32))
    masks = (masks / k / quantum).round() * quantum
    assert torch.equal(winners(masks), _with_leftover(masks).argmax(1)[:, 0])


@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(1, 5), st.integers(1, 3))
def test_fg_ari_matches_sklearn_on_random_partitions(seed, objects, k, n):
    rng = np.random.default_rng(seed)
    ids = torch.from_numpy(rng.integers(0, objects + 1, (n, 6, 6)))
    masks = torch.from_numpy(rng.random((n, k, 1, 6, 6), dtype=np.float32)) / k
    ours = fg_ari(masks, ids)
    pred = _with_leftover(masks).argmax(1)[:, 0]
    for i in range(n):
        fg = ids[i] > 0
        if not fg.any():
            assert torch.isnan(ours[i])
            continue
        expected = adjusted_rand_score(ids[i][fg].numpy(), pred[i][fg].numpy())
        assert ours[i].item() == pytest.approx(expected, abs=1e-9)


def test_one_object_kept_whole_is_one_and_split_is_zero():
    ids = torch.zeros(1, 4, 4, dtype=torch.long)
    ids[0, :2] = 1
    whole = torch.zeros(1, 2, 1, 4, 4)
    whole[0, 0, 0, :2] = 1
    split = torch.zeros(1, 2, 1, 4, 4)
    split[0, 0, 0, 0], split[0, 1, 0, 1] = 1, 1
    assert fg_ari(whole, ids).item() == 1.0
    assert fg_ari(split, ids).item() == 0.0


def test_masks_that_do_not_sum_to_one_get_a_leftover_cluster():
    ids = torch.tensor([[[1, 1, 2, 2]]])
    masks = torch.tensor([[[[0.9, 0.8, 0.0, 0.1]]]])[:, :, None]  # one mask; 2 is left over
    assert fg_ari(masks, ids).item() == 1.0


def test_background_is_ignored():
    ids = torch.tensor([[[0, 0, 1, 1]]])
    masks = torch.tensor([[[[1.0, 0.0, 1.0, 1.0]], [[0.0, 1.0, 0.0, 0.0]]]])[:, :, None]
    assert fg_ari(masks, ids).item() == 1.0


def test_count_and_collapse():
    ids = torch.zeros(2, 10, 10, dtype=torch.long)
    ids[:, :5] = 1
    good = torch.zeros(2, 3, 1, 10, 10)
    good[:, 0, :, :5], good[:, 1, :, 5:] = 1, 1
    assert count_accuracy(good, ids) == 1.0
    assert collapse_share(good) == 0.0
    collapsed = torch.zeros(2, 3, 1, 10, 10)
    collapsed[:, 0] = 1
    assert count_accuracy(collapsed, ids) == 0.0
    assert count_errors(collapsed, ids) == {"too many": 0.0, "too few": 1.0}  # one region, not 2
    assert collapse_share(collapsed) == 1.0


def test_a_partition_then_empty_masks_scores_one_and_slivers_score_lower():
    """Objects then silence is the ideal decomposition; splitting thin slivers off the objects
    into later tokens lowers both scores."""
    ids = torch.zeros(1, 8, 8, dtype=torch.long)
    ids[0, :4, :4], ids[0, 4:, 4:] = 1, 2
    truth = (ids[0] == torch.arange(3)[:, None, None]).float()  # background, object 1, object 2
    ideal = torch.cat([truth, torch.zeros(3, 8, 8)])[None, :, None]  # then three empty masks
    assert count_accuracy(ideal, ids) == 1.0 and fg_ari(ideal, ids).item() == 1.0
    assert count_errors(ideal, ids) == {"too many": 0.0, "too few": 0.0}
    slivers = ideal.clone()
    slivers[0, 1, 0, :, 3] = 0  # a column of each object goes to a later token
    slivers[0, 3, 0, :4, 3] = 1
    slivers[0, 2, 0, :, 7] = 0
    slivers[0, 4, 0, 4:, 7] = 1
    assert count_accuracy(slivers, ids) < 1.0 and fg_ari(slivers, ids).item() < 1.0
    assert count_errors(slivers, ids) == {"too many": 1.0, "too few": 0.0}


def test_merged_share_counts_the_objects_a_mask_took_together():
    ids = torch.zeros(1, 1, 6, dtype=torch.long)
    ids[0, 0, :2], ids[0, 0, 2:4], ids[0, 0, 4] = 1, 2, 3  # pixel 5 is background
    separate = (ids[0] == torch.arange(4)[:, None, None]).float()[None, :, None]
    assert merged_share(separate, ids) == 0.0
    together = separate.clone()
    together[0, 1] += together[0, 2]  # objects 1 and 2 in one mask
    together[0, 2] = 0
    assert merged_share(together, ids) == pytest.approx(2 / 3)
    assert merged_share(torch.ones(1, 1, 1, 1, 6), ids) == 1.0  # the collapse: all in one


@given(st.integers(0, 2**32 - 1), st.integers(0, 4), st.integers(1, 5), st.integers(1, 3))
def test_merged_share_is_a_share_and_zero_when_each_object_has_its_own_mask(seed, objects, k,
                                                                             n):
    rng = np.random.default_rng(seed)
    ids = torch.from_numpy(rng.integers(0, objects + 1, (n, 6, 6)))
    masks = torch.from_numpy(rng.random((n, k, 1, 6, 6), dtype=np.float32)) / k
    assert 0.0 <= merged_share(masks, ids) <= 1.0
    own = (ids[:, None] == torch.arange(objects + 1)[:, None, None]).float()[:, :, None]
    assert merged_share(own, ids) == 0.0


def _one_mask_each(ids: torch.Tensor, order: list[int], k: int) -> torch.Tensor:
    """(1, k, 1, H, W) masks: object order[t] at token t, then empty ones, the background last."""
    masks = torch.zeros(1, k, 1, *ids.shape[1:])
    for t, g in enumerate(order):
        masks[0, t, 0] = (ids[0] == g).float()
    masks[0, -1, 0] = (ids[0] == 0).float()
    return masks


def test_resumed_share_counts_silence_that_does_not_last():
    ids = torch.zeros(1, 4, 4, dtype=torch.long)
    ids[0, :2, :2], ids[0, 2:, 2:] = 1, 2
    in_turn = _one_mask_each(ids, [1, 2], 5)  # objects, silence, the rest
    assert resumed_share(in_turn) == 0.0
    gap = torch.cat([in_turn[:, :1], in_turn[:, 2:3], in_turn[:, 1:2], in_turn[:, 3:]], 1)
    assert resumed_share(gap) == 1.0  # object, silence, object
    assert resumed_share(torch.cat([in_turn, gap])) == 0.5


def test_label_tells_token_is_one_for_slots_and_zero_for_objects_taken_in_turn():
    ids = torch.zeros(2, 4, 4, dtype=torch.long)
    ids[:, :2, :2], ids[:, 2:, 2:] = 1, 2
    labels = torch.tensor([[0, 1], [1, 0]])  # the two objects' colours, swapped in image 2
    in_turn = torch.cat([_one_mask_each(ids[:1], [1, 2], 3)] * 2)  # whatever their colour
    assert label_tells_token(in_turn, ids, labels) == 0.0
    slots = torch.cat([_one_mask_each(ids[:1], [1, 2], 3), _one_mask_each(ids[:1], [2, 1], 3)])
    assert label_tells_token(slots, ids, labels) == 1.0  # token 1 always draws colour 0
    pairs = torch.tensor([[0, 1], [2, 3]])  # token 1 the slot of colours 0 and 2
    assert label_tells_token(in_turn, ids, pairs) == 1.0
    none = torch.full_like(labels, -1)
    assert label_tells_token(slots, ids, none) == 0.0


def test_missed_pixels_tells_a_cross_missing_its_arms_from_a_square_missing_its_middle():
    """A 3 x 3 opening keeps a 4 x 4 square whole and takes a cross's one-pixel arms, so a
    mask without the arms misses thin parts only, one with a hole in the square elsewhere."""
    ids = torch.zeros(1, 12, 12, dtype=torch.long)
    ids[0, 1:5, 1:5] = 1  # a square
    ids[0, 7:10, 8], ids[0, 8, 7:10] = 2, 2  # a plus of five pixels: all thin
    own = _one_mask_each(ids, [1, 2], 3)
    assert missed_pixels(own, ids) == {"thin parts": 0.0, "elsewhere": 0.0}
    no_arms = own.clone()
    no_arms[0, 1, 0, 8, 7] = no_arms[0, 1, 0, 8, 9] = 0  # two arm pixels to the background
    assert missed_pixels(no_arms, ids) == {"thin parts": 2 / 5, "elsewhere": 0.0}
    hole = own.clone()
    hole[0, 0, 0, 2:4, 2:4] = 0  # the square's middle
    assert missed_pixels(hole, ids) == {"thin parts": 0.0, "elsewhere": 4 / 16}


@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(1, 5), st.integers(1, 3),
       st.integers(1, 4))
def test_decomposition_shares_lie_in_zero_one(seed, objects, k, n, kinds):
    rng = np.random.default_rng(seed)
    ids = torch.from_numpy(rng.integers(0, objects + 1, (n, 6, 6)))
    masks = torch.from_numpy(rng.random((n, k, 1, 6, 6), dtype=np.float32))
    labels = torch.from_numpy(rng.integers(-1, kinds, (n, objects)))
    assert 0.0 <= resumed_share(masks) <= 1.0
    assert -1e-9 <= label_tells_token(masks, ids, labels) <= 1.0 + 1e-9
    assert all(0.0 <= v <= 1.0 for v in missed_pixels(masks, ids).values())

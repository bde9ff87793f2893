"""vle_kit.testing: an outside plug-in passes in one call; broken ones are caught and named."""

import pytest
import torch
from hypothesis import given

from vle_kit.interfaces import Composer, MaskLoss, ModelSpec
from vle_kit.testing import check_mask_loss, check_model_part
from vle_kit.testing.strategies import binary_stacks, mask_stacks, states
from vle_kit.testing.suites import altered, constructed_cases


class OverlapLoss(MaskLoss):
    """An outside-style mask loss: mean pairwise overlap of the masks."""

    def forward(self, masks, images):
        total = masks.sum(1)
        return ((total.pow(2) - masks.pow(2).sum(1)) / 2).mean()


class NaNAtZeroLoss(MaskLoss):
    def forward(self, masks, images):
        return (masks / masks.sum()).mean()  # 0 / 0 on all-zero masks


class NegativeLoss(MaskLoss):
    def forward(self, masks, images):
        return masks.mean() - 0.5


class OrderDependentLoss(MaskLoss):
    def forward(self, masks, images):
        return masks[0].mean()


class ReadsTheLastImageLoss(MaskLoss):
    """Depends on the images, and only on the last of the batch."""

    def forward(self, masks, images):
        return masks.mean() + images[-1].pow(2).mean()


class ReadsTheLastPartLoss(MaskLoss):
    """Reads what the tokens drew, and only the last image's."""

    reads_parts = True

    def forward(self, masks, images, parts):
        return masks.mean() + parts[-1].pow(2).mean()


class StopsWhenSettledLoss(MaskLoss):
    """Asks the data whether to go on: fine on real tensors, not on the meta device."""

    def forward(self, masks, images):
        grown = masks.clamp(0.1, 1)
        return grown.mean() if torch.equal(grown, masks) else masks.mean()


def test_an_outside_mask_loss_passes_in_one_call():
    check_mask_loss(OverlapLoss, zero_at=mask_stacks(k=(1, 1)))


@pytest.mark.parametrize("loss,property_name", [
    (NaNAtZeroLoss, "finite_and_non_negative"),
    (NegativeLoss, "finite_and_non_negative"),
    (OrderDependentLoss, "independent_of_batch_order"),
    (ReadsTheLastImageLoss, "independent_of_batch_order"),
    (ReadsTheLastPartLoss, "independent_of_batch_order"),
    (StopsWhenSettledLoss, "runs_on_the_meta_device"),
])
@pytest.mark.parametrize("drawn", ["any stack", "one all-ones image"])
def test_a_broken_mask_loss_is_caught_and_named(loss, property_name, drawn):
    """Caught on every run: with "one all-ones image" hypothesis can draw no counterexample
    (no zero sum, mean 1, a batch of one), so the kit's constructed cases must catch it."""
    stacks = mask_stacks(batch=(1, 1), kinds=("ones",)) if drawn != "any stack" else None
    with pytest.raises(AssertionError, match=f"{loss.__name__}: property {property_name} failed"):
        check_mask_loss(loss, stacks=stacks)


def test_the_altered_copy_differs_everywhere():
    for case in constructed_cases():
        masks, images, parts = case
        other_masks, other_images, other_parts = altered(*case)
        assert (other_masks != masks).all() and (other_images != images).all()
        assert (other_parts != parts).all() and parts.shape[:2] == masks.shape[:2]
        assert ((other_masks >= 0) & (other_masks <= 1)).all()
        assert ((other_images >= -1) & (other_images <= 1)).all()
        assert ((other_parts >= -1) & (other_parts <= 1)).all()


def test_a_wrong_ideal_is_caught():
    # every stack drawn is all ones with K >= 2: the masks overlap, so the loss is not 0
    with pytest.raises(AssertionError, match="zero_at_its_ideal"):
        check_mask_loss(OverlapLoss, zero_at=mask_stacks(k=(2, 3), kinds=("ones",)))


def test_a_right_ideal_passes():
    check_mask_loss(OverlapLoss, zero_at=binary_stacks(k=(1, 1)))


class ClampedResidual(Composer):
    def forward(self, x, state):
        return (x - state.recon).clamp(-1, 1)


class ShapeBreakingComposer(Composer):
    def forward(self, x, state):
        return x[:, :, ::2, ::2]


def test_an_outside_composer_passes_the_contract():
    check_model_part("composer", ClampedResidual)


def test_a_composer_with_the_wrong_shape_fails_the_contract():
    with pytest.raises(Exception):
        check_model_part("composer", ShapeBreakingComposer)


@given(states())
def test_states_are_consistent(state):
    assert state.recon.shape == state.x.shape
    assert len(state.masks) == state.step
    assert ((state.mask_sum >= 0) & (state.mask_sum <= 1)).all()
    spec = ModelSpec(image_channels=3, width=16, tokens_max=4)
    assert ClampedResidual(None, spec)(state.x, state).abs().max() <= 1

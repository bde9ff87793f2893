"""`coverage`: the masks together should explain the whole image; mean of 1 - sum of masks."""

from vle_kit import hookimpl
from vle_kit.interfaces import MaskLoss


class CoverageLoss(MaskLoss):
    def forward(self, masks, images):
        return (1 - masks.clamp(0, 1).sum(1).clamp(max=1)).mean()


@hookimpl
def register_mask_losses(register):
    register("coverage", CoverageLoss)

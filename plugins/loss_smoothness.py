"""`smoothness`: total variation of each mask, mean |difference| of neighbouring pixels."""

from vle_kit import hookimpl
from vle_kit.interfaces import MaskLoss


class SmoothnessLoss(MaskLoss):
    def forward(self, masks, images):
        m = masks.clamp(0, 1)
        dy = (m[..., 1:, :] - m[..., :-1, :]).abs().mean()
        dx = (m[..., :, 1:] - m[..., :, :-1]).abs().mean()
        return (dx + dy) / 2


@hookimpl
def register_mask_losses(register):
    register("smoothness", SmoothnessLoss)

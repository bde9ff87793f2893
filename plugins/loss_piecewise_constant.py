"""`piecewise_constant`: each mask should cover a region of one colour.

The mask-weighted variance of the image under each mask, summed over the masks and averaged
over pixels and channels: the piecewise-constant energy of Chan-Vese / Mumford-Shah, a soft
k-means in colour space. It is 0 when every mask covers a flat-coloured region, and a mask
spread over the whole scene pays the scene's whole colour variance.
"""

from vle_kit import hookimpl
from vle_kit.interfaces import MaskLoss


class PiecewiseConstantLoss(MaskLoss):
    def forward(self, masks, images):
        m = masks.clamp(0, 1)  # (B, K, 1, H, W)
        x = images[:, None]  # (B, 1, C, H, W)
        area = m.sum(dim=(3, 4), keepdim=True).clamp_min(1e-6)
        mean = (m * x).sum(dim=(3, 4), keepdim=True) / area  # each mask's colour
        return (m * (x - mean).pow(2)).sum(1).mean()


@hookimpl
def register_mask_losses(register):
    register("piecewise_constant", PiecewiseConstantLoss)

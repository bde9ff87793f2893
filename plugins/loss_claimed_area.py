"""`claimed_area`: the mean area the masks claim before the last token, which takes what they
leave. It lets the background stay with the last token instead of being traced around every
object by the first: the other mask losses (a rest of one colour under `piecewise_constant`)
still make the earlier tokens claim the objects, and an object's outline is easier to draw
than the outline of everything but the objects.
"""

from vle_kit import hookimpl
from vle_kit.interfaces import MaskLoss


class ClaimedAreaLoss(MaskLoss):
    min_tokens = 2  # one token takes the whole image: nothing is claimed before it

    def forward(self, masks, images):
        return masks[:, :-1].mean()


@hookimpl
def register_mask_losses(register):
    register("claimed_area", ClaimedAreaLoss)

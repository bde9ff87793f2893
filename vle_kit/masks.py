"""What the saliency heads share: turning logits into masks that never claim too much.

A mask is a scaled tanh of the head's logits (notes, Apr 28: clamping is necessary), rescaled
to (0, 1); its scale can be annealed over training; it can be rounded with a straight-through
gradient; and with `scope` it is taken from what earlier masks left (MONet's stick-breaking), so
the running sum never passes 1, and the last of the K tokens takes all that is left, so the K
masks always cover the image. With `min_area`, a mask holding less than that share of the image
above 0.5 is dropped, in training and decoding alike: a token claims a region or nothing, and
what it would have held stays for later tokens (GENESIS-v2 stops at the first empty mask). The
least area rises from 0 with training's progress, so that tokens first learn to take objects.
With `bound`, the scaled logits are clamped going forward and passed straight through going
back: a mask never reaches 1 (in float32 it does past 9; at the largest bound, 6, it stays
6e-6 below), so a price on what it holds in log space (`own_colour`'s `log`) still moves the
logits of a saturated mask.
With `claims_from`, the tokens before that one claim nothing: they draw the whole scene for
the first prefixes, and the masks, each a region, start after them.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor, nn

from vle_kit.decomposition import mask_area
from vle_kit.interfaces import SaliencyHead, State
from vle_kit.layers import Activation, ResBlock, conv3


@attrs.frozen(kw_only=True)
class MaskConfig:
    sharpness: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))  # tanh scale
    anneal_from: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))  # 0 = off
    straight_through: bool = False  # round to 0/1 going forward, identity gradient going back
    scope: bool = True  # a mask only claims what earlier ones left; the last takes the rest
    min_area: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0),
                                                          attrs.validators.lt(1)])  # 0 = off
    claims_from: int = attrs.field(default=1, validator=attrs.validators.ge(1))  # first token
    bound: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0),
                                                       attrs.validators.le(6)])  # 0 = off


def fixed_mask(state: State, cfg: MaskConfig) -> Tensor | None:
    """The mask of a step that needs no logits, or None: with scope, the last of the K tokens
    takes what earlier masks left; a token before `claims_from` claims nothing."""
    if cfg.scope and state.step == state.k - 1:
        return 1 - state.mask_sum
    if state.step < cfg.claims_from - 1:
        return torch.zeros_like(state.mask_sum)
    return None


def logits_to_mask(logits: Tensor, state: State, cfg: MaskConfig) -> Tensor:
    """(B, 1, H, W) logits -> mask in [0, 1 - mask_sum] (or [0, 1] without scope)."""
    fixed = fixed_mask(state, cfg)
    if fixed is not None:
        return fixed
    scale = cfg.sharpness
    if cfg.anneal_from:
        scale = cfg.anneal_from + (cfg.sharpness - cfg.anneal_from) * state.progress
    x = scale * logits
    if cfg.bound:  # forward clamped, backward straight through: a mask stays below 1 and a
        # price on it reaches its logit (the value exact; x + (c - x).detach() would round)
        x = x.clamp(-cfg.bound, cfg.bound).detach() + (x - x.detach())
    mask = 0.5 * (1 + torch.tanh(x))
    if cfg.straight_through:
        mask = mask + (mask.round() - mask).detach()
    if state.window is not None:  # the locator's: the token claims only near its place
        mask = mask * state.window
    if cfg.scope:
        mask = mask * (1 - state.mask_sum)
    if cfg.min_area:  # held from the start, tokens learn to take several objects, not be dropped
        least = cfg.min_area * state.progress
        mask = mask * (mask_area(mask[:, None]) >= least)[..., None, None]
    return mask


@attrs.frozen(kw_only=True)
class ConvHeadConfig(MaskConfig):
    hidden: int = attrs.field(default=16, validator=attrs.validators.ge(1))


class ConvMaskHead(SaliencyHead):
    """A deliberately small head: one convolution and two residual blocks (notes, Apr 28: a
    large saliency model collapses), at half resolution: 2 x 2 pixel blocks are folded into
    channels going in and the four logits of a block unfolded coming out, so the mask is still
    one logit a pixel. Subclasses choose what it sees."""

    Config = ConvHeadConfig

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        cin = self.input_channels(spec.image_channels)
        self.net = nn.Sequential(nn.PixelUnshuffle(2), conv3(4 * cin, cfg.hidden),
                                 ResBlock(cfg.hidden), ResBlock(cfg.hidden), Activation(),
                                 nn.Conv2d(cfg.hidden, 4, 1), nn.PixelShuffle(2))

    def input_channels(self, image_channels: int) -> int:
        raise NotImplementedError

    def inputs(self, state: State, part: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, state, feat, part, extra):
        fixed = fixed_mask(state, self.cfg)  # skip a full-resolution head whose output is unused
        if fixed is not None:
            return fixed
        return logits_to_mask(self.net(self.inputs(state, part)), state, self.cfg)


def fill_unclaimed(state: State, part: Tensor) -> Tensor:
    """The running reconstruction with the newest part filling what no earlier mask has
    claimed (its own mask decides only what stays later), so every prefix is a whole image:

        sum_{s < t} mask_s * part_s + (1 - sum_{s < t} mask_s) * part_t

    (`state.recon` held the previous part in that unclaimed rest; it is taken out again.)"""
    rest = 1 - state.mask_sum
    claimed = state.recon - rest * state.parts[-1] if state.parts else 0
    return claimed + rest * part

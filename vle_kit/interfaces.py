"""The base classes a plug-in subclasses, one per slot, and the state the engine hands them.

Each plug-in class keeps its recipe options in an inner attrs class called `Config`; the
recipe's table for the slot is checked against it. Model parts are built as `Cls(cfg, spec)`.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from torch import Tensor, nn


@attrs.frozen
class NoOptions:
    """The Config of a plug-in that takes no options."""


@attrs.frozen(kw_only=True)
class ModelSpec:
    """What every model part may need to know about the model it is built into."""

    image_channels: int  # C of the images
    image_size: int = 32  # H = W of the images
    width: int  # feature channels of the encoder where memory and saliency see them
    tokens_max: int  # the largest number of tokens the model is trained to be asked for
    token_channels: int = 4  # one token is token_channels x token_size x token_size floats
    token_size: int = 4
    mask_channels: int = 0  # channels the decoder emits beside the part, for the saliency head
    narrowest: int = 32  # the fewest channels at any resolution of the stem and the decoders

    @property
    def upsamplings(self) -> int:
        """How many 2x steps lead from a token's resolution to the image's (the recipe check
        makes their ratio a power of two)."""
        return (self.image_size // self.token_size).bit_length() - 1

    @property
    def decoded_channels(self) -> int:
        """What a decoder emits at each pixel: the part's channels, then the mask's."""
        return self.image_channels + self.mask_channels


def take(tree: object, rows: Tensor) -> object:
    """The `rows` (a batch index or mask) of every tensor in a nest of tuples, lists and
    tensors (None stays None): how a model part's memory follows images leaving a batch."""
    if isinstance(tree, Tensor):
        return tree[rows]
    if isinstance(tree, (tuple, list)):
        return type(tree)(take(t, rows) for t in tree)
    return tree


@attrs.define(eq=False)
class State:
    """What the loop knows before step `step` (0-based) of `k` requested steps."""

    x: Tensor  # (B, C, H, W) the input, in [-1, 1]
    k: int
    step: int
    recon: Tensor  # (B, C, H, W) the reconstruction so far
    mask_sum: Tensor  # (B, 1, H, W) in [0, 1]: how much of each pixel the masks have claimed
    masks: list[Tensor]  # the masks so far, each (B, 1, H, W)
    parts: list[Tensor] = attrs.field(factory=list)  # the parts so far, each (B, C, H, W)
    progress: float | Tensor = 1.0  # share of training done, for annealed plug-ins (a 0-d
    # tensor under train.compile); 1 outside training
    decoder_memory: object | None = None  # what the decoder carries from step to step
    locator_memory: object | None = None  # what the locator keeps of earlier steps' work
    window: Tensor | None = None  # (B, 1, H, W) where this step's mask may claim; None: anywhere

    def take(self, rows: Tensor) -> State:
        """The state of the images `rows` only."""
        return attrs.evolve(self, x=self.x[rows], recon=self.recon[rows],
                            mask_sum=self.mask_sum[rows], masks=take(self.masks, rows),
                            parts=take(self.parts, rows),
                            decoder_memory=take(self.decoder_memory, rows),
                            locator_memory=take(self.locator_memory, rows),
                            window=take(self.window, rows))

    @classmethod
    def start(cls, x: Tensor, k: int, progress: float | Tensor = 1.0) -> State:
        b, _, h, w = x.shape
        return cls(x, k, 0, torch.zeros_like(x), x.new_zeros(b, 1, h, w), [], progress=progress)


class ModelPart(nn.Module):
    """What every model plug-in shares: built as `Cls(cfg, spec)`, options in `Config`."""

    Config: ClassVar[type] = NoOptions

    def __init__(self, cfg, spec: ModelSpec):
        super().__init__()
        self.cfg = cfg


class Composer(ModelPart):
    """Builds the encoder's input at a step from the image and the state: image_channels +
    extra_channels planes."""

    extra_channels: ClassVar[int] = 0  # planes it adds to the image's, e.g. a mask

    def forward(self, x: Tensor, state: State) -> Tensor:
        raise NotImplementedError


class Memory(ModelPart):
    """Carries state across steps; sees the stem's features (B, width, h, w)."""

    def forward(self, feat: Tensor, memory: object | None) -> tuple[Tensor, object | None]:
        """Return the features for the encoder body and the memory for the next step."""
        raise NotImplementedError


class Locator(ModelPart):
    """Chooses where the token of a step looks before it is encoded: a place (B, floats), x
    and y in [-1, 1] and whatever else the window needs (its size). The place travels as the
    token's first `floats` floats, so decoding finds it again; the encoder sees extra_channels
    more input planes, chosen with the place (`unplaced_planes` without one), and the
    token's mask is multiplied by the window."""

    extra_channels: ClassVar[int] = 0
    floats: ClassVar[int] = 2  # of the token, holding the place

    def placed(self, state: State) -> bool:
        """Whether the token of step state.step has a place; from the step and K alone, so
        that decoding knows it too."""
        return False

    def place(self, state: State) -> tuple[Tensor, Tensor]:
        """The place (B, floats) of the token of step state.step, from the state before it,
        and the extra_channels planes (B, extra_channels, H, W) its encoder sees beside its
        input: what the locator found, in one pass. What a later step's place can reuse it
        may keep in state.locator_memory: tensors of one row an image, in tuples if more
        (`take` follows the images that leave a batch)."""
        raise NotImplementedError

    def unplaced_planes(self, like: Tensor) -> Tensor:
        """The planes the encoder sees beside `like` at a step without a place: all ones, as
        its token may claim anywhere."""
        return torch.ones_like(like[:, :1]).expand(-1, self.extra_channels, -1, -1)

    def window(self, place: Tensor | None, like: Tensor) -> Tensor:
        """(B, 1, H, W) in [0, 1]: how much of each pixel of `like` the token at `place` may
        claim; everything for None."""
        return torch.ones_like(like[:, :1])


class Decoder(ModelPart):
    """Turns a token (B, c, s, s) into the part it adds to the image (B, C, H, W), followed by
    spec.mask_channels channels for the saliency head. It may look at what the earlier tokens
    drew (state.recon, state.masks) and carry a memory of its own from step to step, never at
    the image: everything it sees follows from the tokens, so any prefix decodes exactly."""

    def forward(self, z: Tensor, state: State, memory: object | None
                ) -> tuple[Tensor, object | None]:
        """Return the decoded channels and the memory for the next step."""
        raise NotImplementedError


class SaliencyHead(ModelPart):
    """Produces the mask (B, 1, H, W) of the part a token explains, or None."""

    decoder_channels: ClassVar[int] = 0  # extra channels the decoder emits for this head
    from_tokens: ClassVar[bool] = False  # True if the mask follows from the decoder's output
    #                                      alone, so saved tokens decode without the image
    makes_masks: ClassVar[bool] = True  # False for a head that always returns None
    # its weights go without a gradient at the last step, which takes what is left (all
    # steps at K = 1); what DistributedDataParallel must know (Trainer.wrapped)
    idle_some_steps: ClassVar[bool] = True

    def forward(self, state: State, feat: Tensor, part: Tensor, extra: Tensor) -> Tensor | None:
        raise NotImplementedError


class Combiner(ModelPart):
    """Joins a new part (B, C, H, W) and its mask (or None) to the running reconstruction."""

    paints_over: ClassVar[bool] = False  # True if a mask claims pixels earlier masks held, so
    #                                      the saliency head must not scope it to what they left

    def forward(self, state: State, part: Tensor, mask: Tensor | None) -> Tensor:
        raise NotImplementedError

    def claim(self, state: State, mask: Tensor) -> None:
        """Record the new mask in state.masks and state.mask_sum: by default it takes its
        share of what earlier masks left, and they keep what they hold."""
        state.mask_sum = (state.mask_sum + mask).clamp(0, 1)
        state.masks.append(mask)


@attrs.frozen(kw_only=True)
class MaskLossConfig:
    """Options every mask loss has: its weight in the total loss, a linear warm-up, and the
    token whose mask it sees first (the earlier ones it never sees)."""

    weight: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    warmup: int = attrs.field(default=0, validator=attrs.validators.ge(0))  # steps to full weight
    from_token: int = attrs.field(default=1, validator=attrs.validators.ge(1))


class MaskLoss(nn.Module):
    """A penalty on the stack of masks (B, K, 1, H, W), which may look at the images
    (B, C, H, W) in [-1, 1] the masks were made for; returns a scalar. A loss about how masks
    relate (to the previous one, to the last token's) sets `min_tokens`: on a stack of fewer
    masks it is zero, and its forward never sees one. A loss that sets `reads_parts` gets what
    each token drew as well, forward(masks, images, parts) with parts (B, K, C, H, W)."""

    Config: ClassVar[type] = MaskLossConfig
    min_tokens: ClassVar[int] = 1
    reads_parts: ClassVar[bool] = False  # forward also gets what each token drew

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg

    def __call__(self, masks: Tensor, images: Tensor, parts: Tensor | None = None) -> Tensor:
        if self.cfg.from_token > 1:
            masks = masks[:, self.cfg.from_token - 1:]
            parts = None if parts is None else parts[:, self.cfg.from_token - 1:]
        if masks.shape[1] < self.min_tokens:
            return masks.sum() * 0  # zero, still a function of the masks
        if self.reads_parts:
            return super().__call__(masks, images, parts)
        return super().__call__(masks, images)

    def forward(self, masks: Tensor, images: Tensor) -> Tensor:
        raise NotImplementedError

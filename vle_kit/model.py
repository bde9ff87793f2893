"""The VLE: one encoder-decoder called K times on what it has not explained yet.

    x ─► composer(x, state) + locator's planes ─► stem ─► memory ─► body(K, t) ─► token z_t
                             └──────────── linear map of step t (optional) ───┘
    z_t ─► decoder(state) ─► part_t in ±PART_BOUND (+ mask channels) ─► saliency x window ─► mask_t
    (part_t, mask_t) ─► combiner ─► recon_t ─► state for step t + 1

The slots (composer, locator, memory, decoder, saliency, combiner) are plug-ins; the stem, the
body and the token layer around them are fixed here. A locator's place is the token's first
floats.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from vle_kit.config import ModelConfig
from vle_kit.decomposition import mask_area
from vle_kit.errors import VleKitError
from vle_kit.interfaces import (
    Combiner,
    Composer,
    Decoder,
    Locator,
    Memory,
    ModelSpec,
    SaliencyHead,
    State,
    take,
)
from vle_kit.layers import (Activation, ResBlock, StepLinear, conv3, film, film_table, stem,
                            table_row)

PART_BOUND = 4.0  # images are in [-1, 1]; a part past 4 draws nothing (see VLE.explain)


@dataclasses.dataclass(frozen=True)  # not attrs: DistributedDataParallel looks into dataclasses
class Output:
    tokens: Tensor  # (B, K, channels, size, size)
    parts: Tensor  # (B, K, C, H, W) what each token decodes to
    recons: Tensor  # (B, K, C, H, W) the reconstruction after each token
    masks: Tensor | None  # (B, K, 1, H, W), or None without a saliency head
    kl: Tensor | None = None  # (B, K) KL divergence of each Gaussian token, or None


@dataclasses.dataclass(frozen=True)
class Encoding:
    """Images encoded with as many tokens as each needs (VLE.encode)."""

    tokens: Tensor  # (B, L, channels, size, size), zero past each image's length; L the longest
    lengths: Tensor  # (B,) int64, each image's number of tokens
    recons: Tensor  # (B, C, H, W) each image's reconstruction after its own length
    masks: Tensor | None  # (B, L, 1, H, W), zero past each image's length; None without masks


def image_mse(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared error per image (B,)."""
    return (a - b).pow(2).flatten(1).mean(1)


def stack_steps(images: list[Tensor]) -> Tensor:
    """(B, C, H, W) images of successive steps as one (B, K, C, H, W) tensor, channels-last
    ones stacked channels-last: a plain stack would move every value to channels-first, and
    the loss on it would run on mismatched layouts (six times slower a stack at K = 8)."""
    first = images[0]
    if len(images) == 1:
        return first.unsqueeze(1)  # a view: nothing to copy
    if first.is_contiguous(memory_format=torch.channels_last) and not first.is_contiguous():
        return torch.stack([i.permute(0, 2, 3, 1) for i in images], 1).permute(0, 1, 4, 2, 3)
    return torch.stack(images, 1)


def with_place(z: Tensor, place: Tensor) -> Tensor:
    """Token z (B, c, s, s) carrying a locator's place (B, n) as its first n floats."""
    return torch.cat([place, z.flatten(1)[:, place.shape[1]:]], 1).view_as(z)


def place_of(z: Tensor, floats: int) -> Tensor:
    """The place (B, floats) a token carries (`with_place`)."""
    return z.flatten(1)[:, :floats]


def rms(x: Tensor) -> Tensor:
    """Root mean square per image (B, 1, 1, 1), kept away from zero."""
    return x.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-6)


def gaussian_token(stats: Tensor, sample: bool) -> tuple[Tensor, Tensor]:
    """A VAE's token from (B, 2c, s, s) means and log-variances: a draw while training, the
    mean otherwise; and its KL divergence from N(0, 1) per image (B,)."""
    mean, log_var = stats.chunk(2, 1)
    log_var = log_var.clamp(-10, 10)
    kl = 0.5 * (mean.square() + log_var.exp() - 1 - log_var).flatten(1).sum(1)
    z = mean + torch.randn_like(mean) * (0.5 * log_var).exp() if sample else mean
    return z, kl


class VLE(nn.Module):
    composer: Composer
    locator: Locator
    memory: Memory
    decoder: Decoder
    saliency: SaliencyHead
    combiner: Combiner

    def __init__(self, cfg: ModelConfig, spec: ModelSpec, parts: Mapping[str, nn.Module]):
        """`parts`: the plug-in of every model slot, by slot name, built for `spec`."""
        super().__init__()
        for name, part in parts.items():
            self.add_module(name, part)
        width, token = cfg.width, cfg.token
        down = spec.upsamplings - 1  # image -> memory resolution, twice the token's
        in_channels = (spec.image_channels + self.composer.extra_channels  # what the encoder sees
                       + self.locator.extra_channels)
        self.stem = stem(in_channels, width, down, cfg.fold, cfg.narrowest)
        # FiLM from "how many tokens were asked for" and "which step is this" (notes, Apr 12)
        self.film_k = film_table(spec.tokens_max + 1, width) if cfg.tell_k else None
        self.film_step = film_table(spec.tokens_max, width)
        self.body = nn.Sequential(*[ResBlock(width) for _ in range(cfg.blocks)])
        self.gaussian, self.gain = token.gaussian, token.gain
        token_channels = token.channels * (1 + token.gaussian)
        self.to_token = nn.Sequential(Activation(), conv3(width, width, 2), Activation(),
                                      nn.Conv2d(width, token_channels, 1))
        self.linear = None  # the token's linear map of the whole input (README, "What won")
        if token.linear:
            self.linear = StepLinear(spec.tokens_max, in_channels * spec.image_size ** 2,
                                     (token_channels, token.size, token.size))
        self.image_shape = (spec.image_channels, spec.image_size, spec.image_size)

    def forward(self, x: Tensor, k: int, progress: float | Tensor = 1.0) -> Output:
        """Encode x (B, C, H, W) in [-1, 1] into k tokens, reconstructing after each."""
        state, memory = State.start(x, k, progress), None
        tokens, parts, recons, kls = [], [], [], []
        for _ in range(k):
            z, feat, memory, kl = self.next_token(x, state, memory)
            part, recon = self.explain(state, z, feat)
            tokens.append(z), parts.append(part), recons.append(recon), kls.append(kl)
        return Output(torch.stack(tokens, 1), stack_steps(parts), stack_steps(recons),
                      stack_steps(state.masks) if state.masks else None,
                      torch.stack(kls, 1) if self.gaussian else None)

    def next_token(self, x: Tensor, state: State, memory: object | None
                   ) -> tuple[Tensor, Tensor, object | None, Tensor | None]:
        """The token of step state.step: (token, encoder features, memory, its KL or None)."""
        inp = self.composer(x, state)
        place, planes = self.locator.place(state) if self.locator.placed(state) else (None, None)
        if self.locator.extra_channels:
            planes = self.locator.unplaced_planes(inp) if planes is None else planes
            inp = torch.cat([inp, planes], 1)
        gain = rms(inp) if self.gain else None  # the residual shrinks; the encoder sees it
        inp = inp if gain is None else inp / gain  # at unit scale
        feat, memory = self.memory(self.stem(inp), memory)
        feat = self.body(film(feat, self.conditioning(state.k, state.step)))
        z, kl = self.token_layer(inp, feat, state.step), None
        if self.gaussian:
            z, kl = gaussian_token(z, self.training)
        if gain is not None:  # the token's own RMS carries the gain to the decoder
            z = z / rms(z) * gain
        if place is not None:  # the token carries its place: decoding finds the window again
            z = with_place(z, place)
        return z, feat, memory, kl

    def token_layer(self, inp: Tensor, feat: Tensor, step: int) -> Tensor:
        """The token (or a Gaussian token's statistics) of step `step` from the encoder body's
        features and, with model.token.linear, the step's linear map of the input it saw."""
        z = self.to_token(feat)
        return z if self.linear is None else z + self.linear(inp, step)

    def conditioning(self, k: int, step: int) -> Tensor:
        """The FiLM parameters of the encoder's body at step `step` of a k-token encoding."""
        by_step = table_row(self.film_step, step)
        return by_step if self.film_k is None else table_row(self.film_k, k) + by_step

    @torch.no_grad()
    def encode(self, x: Tensor, k: int, max_error: float | None = None,
               min_mask: float | None = None) -> Encoding:
        """Encode each image of x with as many tokens as it needs, at most k: it stops at the
        first token after which its MSE is at most `max_error`, or (`min_mask`, for models
        with masks) before a token whose mask holds less than that share of the image. The
        encoder is asked for k tokens, so an image's tokens are the first of its k-token
        encoding whatever the other images do; images that stopped leave the batch."""
        n, (_, h, w) = len(x), self.image_shape
        state, memory, alive = State.start(x, k), None, torch.arange(n, device=x.device)
        tokens, masks, recons = None, None, torch.zeros_like(x)
        lengths = torch.zeros(n, dtype=torch.long, device=x.device)
        for t in range(k):
            z, feat, memory, _ = self.next_token(state.x, state, memory)
            before, masks_before = state.recon, list(state.masks)
            self.explain(state, z, feat)
            tokens = z.new_zeros(n, k, *z.shape[1:]) if tokens is None else tokens
            tokens[alive, t] = z
            if state.masks:  # all of them: a combiner that paints over changes earlier ones
                masks = x.new_zeros(n, k, 1, h, w) if masks is None else masks
                masks[alive, :t + 1] = torch.stack(state.masks, 1)
            empty = torch.zeros(len(alive), dtype=torch.bool, device=x.device)
            if min_mask is not None and state.masks and t > 0:  # this token would add nothing
                empty = mask_area(state.masks[-1][:, None])[:, 0] < min_mask
            met = torch.full_like(empty, t == k - 1)
            if max_error is not None:
                met |= image_mse(state.recon, state.x) <= max_error
            met &= ~empty
            tokens[alive[empty], t] = 0
            if masks is not None:
                masks[alive[empty], t] = 0
                if masks_before:
                    masks[alive[empty], :t] = torch.stack(masks_before, 1)[empty]
            lengths[alive[empty]], recons[alive[empty]] = t, before[empty]
            lengths[alive[met]], recons[alive[met]] = t + 1, state.recon[met]
            keep = ~(empty | met)
            alive, memory, state = alive[keep], take(memory, keep), state.take(keep)
            if not len(alive):
                break
        longest = int(lengths.max())
        return Encoding(tokens[:, :longest], lengths, recons,
                        None if masks is None else masks[:, :longest])

    def explain(self, state: State, z: Tensor, feat: Tensor | None,
                mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Decode token z at step state.step into its part and the new reconstruction, and
        advance the state. `mask`, if given, replaces the saliency head's."""
        gain = rms(z) if self.gain else None
        out, state.decoder_memory = self.decoder(z if gain is None else z / gain, state,
                                                 state.decoder_memory)
        part, extra = out[:, :self.image_shape[0]], out[:, self.image_shape[0]:]
        part = part if gain is None else part * gain
        # bounded, else one overshooting part feeds the next step a residual past anything it
        # has seen, which it overshoots further: 10 to 1e29 in 8 steps, a NaN loss (README)
        part = part.clamp(-PART_BOUND, PART_BOUND)
        if mask is None:
            state.window = (self.locator.window(place_of(z, self.locator.floats), part)
                            if self.locator.placed(state) else None)
            mask = self.saliency(state, feat, part, extra)
        recon = self.combiner(state, part, mask)
        if mask is not None:
            self.combiner.claim(state, mask)
        state.parts.append(part)
        state.recon, state.step = recon, state.step + 1
        return part, recon

    @torch.no_grad()
    def decode(self, tokens: Tensor, k: int, masks: Tensor | None = None) -> Output:
        """The reconstructions after each of tokens (B, J, c, s, s), the first J of a k-token
        encoding, exactly as the encoding made them. A head that looks at the image (not only
        at the decoder's output) cannot be replayed: give its masks (B, J, 1, H, W)."""
        if not self.saliency.from_tokens and masks is None:
            raise VleKitError(f"the '{type(self.saliency).__name__}' saliency head looks at the "
                              f"image, so its masks must be saved with the tokens to decode them")
        j = tokens.shape[1]
        if not 1 <= j <= k:
            raise VleKitError(f"{j} tokens given; decoding takes 1 to the {k} of the encoding")
        state = State.start(tokens.new_zeros(len(tokens), *self.image_shape), k)
        parts, recons = [], []
        for t in range(j):
            part, recon = self.explain(state, tokens[:, t], None,
                                       None if self.saliency.from_tokens else masks[:, t])
            parts.append(part), recons.append(recon)
        return Output(tokens, stack_steps(parts), stack_steps(recons),
                      stack_steps(state.masks) if state.masks else None)

"""The VLE: one encoder-decoder called K times on what it has not explained yet.

    x ─► composer(x, state) ─► stem ─► memory ─► body(K, t) ─► to_token ─► z_t   (one token)
    z_t ─► decoder ─► part_t (+ mask channels) ─► saliency ─► mask_t
    (part_t, mask_t) ─► combiner ─► recon_t ─► state for step t + 1
"""

from __future__ import annotations

import math

import attrs
import torch
from torch import Tensor, nn

from vle_kit.config import ModelConfig
from vle_kit.interfaces import Combiner, Composer, Memory, SaliencyHead, State
from vle_kit.layers import ResBlock, Up, conv3, level_widths


@attrs.frozen
class Output:
    tokens: Tensor  # (B, K, channels, size, size)
    parts: Tensor  # (B, K, C, H, W) what each token decodes to
    recons: Tensor  # (B, K, C, H, W) the reconstruction after each token
    masks: Tensor | None  # (B, K, 1, H, W), or None without a saliency head


class VLE(nn.Module):
    def __init__(self, cfg: ModelConfig, *, image_channels: int, image_size: int, tokens_max: int,
                 composer: Composer, memory: Memory, saliency: SaliencyHead, combiner: Combiner):
        super().__init__()
        width, token = cfg.width, cfg.token
        down = int(math.log2(image_size // (2 * token.size)))  # stem: image -> memory resolution
        stem_widths = level_widths(width, down)
        self.composer, self.memory, self.saliency, self.combiner = (composer, memory, saliency,
                                                                    combiner)
        self.stem = nn.Sequential(conv3(composer.out_channels, stem_widths[0]),
                                  *[m for a, b in zip(stem_widths[:-1], stem_widths[1:])
                                    for m in (nn.GELU(), conv3(a, b, 2))])
        # FiLM from "how many tokens were asked for" and "which step is this" (notes, Apr 12)
        self.asked = nn.Embedding(tokens_max + 1, 2 * width)
        self.step = nn.Embedding(tokens_max, 2 * width)
        nn.init.zeros_(self.asked.weight)
        nn.init.zeros_(self.step.weight)
        self.body = nn.Sequential(*[ResBlock(width) for _ in range(cfg.blocks)])
        self.to_token = nn.Sequential(nn.GELU(), conv3(width, width, 2), nn.GELU(),
                                      nn.Conv2d(width, token.channels, 1))
        up_widths = level_widths(width, down + 1)[::-1]
        self.decoder = nn.Sequential(
            conv3(token.channels, width), ResBlock(width),
            *[Up(a, b) for a, b in zip(up_widths[:-1], up_widths[1:])],
            conv3(up_widths[-1], image_channels + saliency.decoder_channels))
        self.image_channels = image_channels

    def forward(self, x: Tensor, k: int, progress: float = 1.0) -> Output:
        """Encode x (B, C, H, W) in [-1, 1] into k tokens, reconstructing after each."""
        state, memory = State.start(x, k, progress), None
        tokens, parts, recons, masks = [], [], [], []
        asked = self.asked.weight[k]
        for t in range(k):
            feat = self.stem(self.composer(x, state))
            feat, memory = self.memory(feat, memory)
            scale, shift = (asked + self.step.weight[t]).view(2, 1, -1, 1, 1)
            feat = self.body(feat * (1 + scale) + shift)
            z = self.to_token(feat)
            out = self.decoder(z)
            part, extra = out[:, :self.image_channels], out[:, self.image_channels:]
            mask = self.saliency(state, feat, part, extra)
            recon = self.combiner(state, part, mask)
            if mask is not None:
                state.mask_sum = (state.mask_sum + mask).clamp(0, 1)
                state.masks.append(mask)
            state.recon, state.step = recon, t + 1
            tokens.append(z), parts.append(part), recons.append(recon), masks.append(mask)
        return Output(torch.stack(tokens, 1), torch.stack(parts, 1), torch.stack(recons, 1),
                      torch.stack(masks, 1) if state.masks else None)

"""`plain`: each token decoded alone into its part, knowing nothing of the earlier tokens: a
convolution and a residual block at the token's resolution, then upsampling to the image.

With `step_film = true` the features after the first convolution are scaled and shifted by a
learned vector per step, as the encoder's body is: the step is known at decoding as at
encoding, and one decoder can then read a first token as coarse layout and a late one as fine
corrections (README, "What won": what it bought).

With `fine = n` (channels) the last doubling is drawn at the image's resolution, with n
channels there, instead of unfolding half-resolution channels into 2 x 2 pixel blocks, so
thin parts (a cross's arms) and edges have pixels of their own; on `placed` it bought no more
than more steps in the same minutes (README, "Mask models").

With `unfold = 4` the last convolution runs at a quarter of the image's resolution and its
channels unfold into 4 x 4 pixel blocks: no convolution at half resolution, the dearest of a
step on a CPU, and worse on `inherent` (README, "Mask models"); `unfold_hidden = n` reads
the blocks' pixels from the features through a hidden layer of n channels instead of one
linear map.

With `linear = true` a learned linear map per step from the token's floats to every output
value is added to what the convolutions draw; with the token layer's own linear map
(`model.token.linear`) the model holds a linear autoencoder of the residual beside the
convolutional one (README, "What won": each alone is worse, the two together win).
"""

import attrs
from torch import nn

from vle_kit import hookimpl
from vle_kit.errors import VleKitError
from vle_kit.interfaces import Decoder
from vle_kit.layers import ResBlock, StepLinear, conv3, film, film_table, table_row, up_path


class PlainDecoder(Decoder):
    @attrs.frozen(kw_only=True)
    class Config:
        step_film: bool = False
        linear: bool = False
        fine: int = attrs.field(default=0, validator=attrs.validators.ge(0))
        unfold: int = attrs.field(default=2, validator=attrs.validators.in_((2, 4)))
        unfold_hidden: int = attrs.field(default=0, validator=attrs.validators.ge(0))

        def __attrs_post_init__(self):
            if self.fine and (self.unfold != 2 or self.unfold_hidden):
                raise ValueError(f"fine = {self.fine} draws the last doubling at the image's "
                                 f"resolution, so there are no pixel blocks to unfold; drop "
                                 f"fine, or unfold and unfold_hidden")

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        if cfg.unfold > 2 ** spec.upsamplings:
            raise VleKitError(f"model.decoder.unfold: {cfg.unfold} x {cfg.unfold} pixel blocks "
                              f"are more than the {2 ** spec.upsamplings}x from the token's "
                              f"size to the image's; use 2")
        self.net = nn.Sequential(conv3(spec.token_channels, spec.width), ResBlock(spec.width),
                                 up_path(spec.width, spec.upsamplings, spec.decoded_channels,
                                         cfg.fine, cfg.unfold, cfg.unfold_hidden,
                                         spec.narrowest))
        if cfg.step_film:
            self.film = film_table(spec.tokens_max, spec.width)
        if cfg.linear:
            self.linear = StepLinear(spec.tokens_max, spec.token_channels * spec.token_size ** 2,
                                     (spec.decoded_channels, spec.image_size, spec.image_size))

    def forward(self, z, state, memory):
        if not self.cfg.step_film:
            out = self.net(z)
        else:
            out = self.net[1:](film(self.net[0](z), table_row(self.film, state.step)))
        return out + self.linear(z, state.step) if self.cfg.linear else out, None


@hookimpl
def register_decoders(register):
    register("plain", PlainDecoder)

"""The recipe's shape: one frozen attrs class per table, validators for every range.

Slot tables (`[model.memory]`, `[data]`, `[[mask_loss]]`) become a `Choice`: the registered
name from their `use` key and that plug-in's own Config built from the table's other keys.
Which slots a table holds comes from the slot table (vle_kit/slots.py), not from this file.
"""

from __future__ import annotations

import attrs
import torch
from attrs import validators as v

from vle_kit.data import AUGMENTATIONS, OWN_AUGMENTATIONS
from vle_kit.slots import SLOTS


@attrs.frozen
class Choice:
    """A plug-in picked for a slot, with its validated options."""

    use: str
    config: object


def with_slots(table: str):
    """Class decorator: an attrs table class with one field per slot of the slot table chosen
    in `table` ("model" for [model.memory] and the like, "" for [data] and [[mask_loss]])."""

    def decorate(cls: type) -> type:
        annotations = dict(cls.__dict__.get("__annotations__", {}))
        for s in SLOTS:
            parent, _, field = s.key.rpartition(".")
            if parent == table:
                annotations[field] = "tuple[Choice, ...]" if s.many else "Choice"
                setattr(cls, field, attrs.field(default=() if s.many else None,
                                                metadata={"slot": s}))
        cls.__annotations__ = annotations
        return attrs.frozen(kw_only=True)(cls)

    return decorate


def _at_least_field(other: str):
    def check(instance, attribute, value):
        low = getattr(instance, other)
        if isinstance(low, int) and value < low:
            raise ValueError(f"must be >= {other} ({low}), got {value}")

    return check


@attrs.frozen(kw_only=True)
class RecipeMeta:
    """[recipe]: the run's name and the user's own plug-in modules to load."""

    name: str = ""  # defaults to the recipe file's name
    plugins: tuple[str, ...] = ()  # module names or .py paths, relative to the recipe file


@attrs.frozen(kw_only=True)
class TokenConfig:
    """[model.token]: one token is `channels` x `size` x `size` floats."""

    channels: int = attrs.field(default=4, validator=v.ge(1))
    size: int = attrs.field(default=4, validator=v.ge(1))
    gaussian: bool = False  # a VAE's token: sampled from a predicted Gaussian while training
    kl_weight: float = attrs.field(default=0.05, validator=v.ge(0))  # KL per image value
    gain: bool = False  # gain-shape: the encoder sees its input at unit RMS, the token's RMS
    #                     carries the input's, and the decoder's part is scaled back by it
    linear: bool = False  # the token layer adds a learned linear map per step of the whole
    #                       input the encoder sees, every pixel to every float of the token

    @property
    def floats(self) -> int:
        return self.channels * self.size * self.size


@with_slots("model")
class ModelConfig:
    """[model]: the network around the slots, and a [model.<slot>] table per model slot."""

    width: int = attrs.field(default=64, validator=v.ge(4))  # encoder channels at memory resolution
    blocks: int = attrs.field(default=1, validator=v.ge(0))  # residual blocks in the encoder body
    tell_k: bool = True  # the encoder is told K; without it a j-prefix is the j-token encoding
    fold: int = attrs.field(default=2, validator=v.in_((2, 4)))  # the stem's space-to-depth
    #                   block: 4 skips the half-resolution convolution (README, "Mask models")
    narrowest: int = attrs.field(default=32, validator=v.ge(1))  # the fewest channels at any
    #          resolution of the stem and the decoders (halving per doubling of size down to it)
    token: TokenConfig = attrs.field(factory=TokenConfig)


def _one_weight_per_k(instance, attribute, value):
    if not value:
        return
    ks = instance.max - instance.min + 1
    if len(value) != ks:
        raise ValueError(f"needs one weight for each K from min to max ({ks}), got "
                         f"{len(value)} (tokens.weights = [] draws K uniformly)")
    if any(w < 0 for w in value) or sum(value) <= 0:
        raise ValueError(f"must be at least 0 with a positive sum, got {list(value)}")


@attrs.frozen(kw_only=True)
class TokensConfig:
    """[tokens]: K is drawn from [min, max] at each training step, uniformly unless `weights`
    gives each K its relative chance (e.g. short encodings rarely)."""

    min: int = attrs.field(default=1, validator=v.ge(1))
    max: int = attrs.field(default=8, validator=[v.ge(1), _at_least_field("min")])
    weights: tuple[float, ...] = attrs.field(default=(), validator=_one_weight_per_k)

    def draw(self, generator: torch.Generator) -> int:
        """The K of one training step."""
        if not self.weights:
            return int(torch.randint(self.min, self.max + 1, (1,), generator=generator))
        chances = torch.tensor(self.weights, dtype=torch.float64)
        return self.min + int(torch.multinomial(chances, 1, generator=generator))


@attrs.frozen(kw_only=True)
class TrainConfig:
    """[train]: optimisation, logging and checkpoints."""

    steps: int = attrs.field(default=3000, validator=v.ge(1))
    batch: int = attrs.field(default=64, validator=v.ge(1))
    lr: float = attrs.field(default=1e-3, validator=v.gt(0))
    seed: int = attrs.field(default=0, validator=v.ge(0))
    device: str = attrs.field(default="auto", validator=v.in_(("auto", "cpu", "cuda")))
    warmup: int = attrs.field(default=100, validator=v.ge(0))  # steps of linear lr warm-up
    lr_end: float = attrs.field(  # the cosine decay ends at lr_end * lr
        default=0.1, validator=[v.ge(0), v.le(1)])
    step_loss: float = attrs.field(default=1.0, validator=v.ge(0))  # weight of per-step MSE terms
    step_weights: tuple[float, ...] = attrs.field(  # the first steps' terms times these weights,
        default=(), validator=v.deep_iterable(v.ge(0)))  # at most tokens.max; later steps 1
    loss: str = attrs.field(  # log_mse: each reconstruction term is the log of the batch's MSE,
        default="mse",  # so halving a small error counts as halving a large one; log_mse_image:
        validator=v.in_(("mse", "log_mse", "log_mse_image")))  # the mean of each image's log
    rise: float = attrs.field(default=0.0, validator=v.ge(0))  # weight of any image's error rising
    grad_clip: float = attrs.field(default=1.0, validator=v.ge(0))  # 0 turns clipping off
    augment: tuple[str, ...] = attrs.field(  # flips: the square's 8 symmetries; channels:
        default=(),  # colour channel orders; data: the data set's own (resolved on validation)
        validator=v.deep_iterable(v.in_((*AUGMENTATIONS, OWN_AUGMENTATIONS))))
    ema: float = attrs.field(  # > 0: an exponential moving average of the weights with this
        default=0.0, validator=[v.ge(0), v.lt(1)])  # decay is what is scored, evaluated, used
    log_every: int = attrs.field(default=25, validator=v.ge(1))
    checkpoint_every: int = attrs.field(default=250, validator=v.ge(1))
    grid_images: int = attrs.field(default=8, validator=v.ge(1))  # rows of the final image grid
    keep: int = attrs.field(default=3, validator=v.ge(1))  # step checkpoints kept besides last/best
    eval_images: int = attrs.field(default=200, validator=v.ge(1))  # test images scored per save
    on_nan: str = attrs.field(default="stop", validator=v.in_(("stop", "skip")))  # bad loss
    deterministic: bool = False  # deterministic kernels (GPU); CPU runs are exact regardless
    bf16: bool = False  # bfloat16 autocast of the model on a GPU (the CPU stays in float32)
    compile: bool = False  # torch.compile the model (one graph per K; slow first steps)
    channels_last: bool = True  # NHWC tensors: faster convolutions on CPU and GPU, same results


@attrs.frozen(kw_only=True)
class EvalConfig:
    """[eval]: what the final evaluation (and `vle-kit eval`) measures."""

    tokens: int = attrs.field(default=0, validator=v.ge(0))  # K of the curves; 0 = tokens.max
    probe_images: int = attrs.field(default=1000, validator=v.ge(10))  # train images to fit probes
    max_error: tuple[float, ...] = attrs.field(  # adaptive length at these MSE thresholds too
        default=(), validator=v.deep_iterable(v.ge(0)))
    min_mask: float = attrs.field(default=0.005, validator=[v.ge(0), v.le(1)])  # an empty mask


@with_slots("")
class Recipe:
    """A whole validated recipe: the tables above, [data] and the [[mask_loss]] list."""

    recipe: RecipeMeta = attrs.field(factory=RecipeMeta)
    model: ModelConfig = attrs.field(factory=ModelConfig)
    tokens: TokensConfig = attrs.field(factory=TokensConfig)
    train: TrainConfig = attrs.field(factory=TrainConfig)
    eval: EvalConfig = attrs.field(factory=EvalConfig)

    @property
    def eval_tokens(self) -> int:
        """K of the evaluation curves."""
        return self.eval.tokens or self.tokens.max

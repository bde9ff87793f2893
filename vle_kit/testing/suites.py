"""Property suites a plug-in author calls in one line from a test."""

from __future__ import annotations

import random

import attrs
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from torch import Tensor

from vle_kit.testing.strategies import mask_stacks, with_images, with_parts


def _build(loss_cls, config):
    return loss_cls(loss_cls.Config() if config is None else config)


def _cases(strategy: st.SearchStrategy) -> st.SearchStrategy[tuple]:
    """(masks, images, parts) triples: mask stacks get random images and parts, (masks,
    images) pairs random parts; triples pass through. A loss that does not read parts never
    sees them."""
    def complete(value):
        if not isinstance(value, tuple):
            return with_images(value).flatmap(with_parts)
        return st.just(value) if len(value) == 3 else with_parts(value)
    return strategy.flatmap(complete)


def constructed_cases(channels: int = 3, size: int = 4) -> list[tuple[Tensor, Tensor, Tensor]]:
    """(masks, images, parts) every mask-loss property is checked on, whatever hypothesis
    draws: all-zero, all-one and half-on masks, a partition and the collapse pattern, each a
    batch of two different images (and parts that are the image, its negative, the image...),
    so the edge cases that break losses are never left to chance."""
    shape = (2, 3, 1, size, size)  # B = 2 images, K = 3 masks
    half = torch.zeros(shape)
    half[..., : size // 2] = 1
    labels = (torch.arange(size) % 3).expand(size, size)  # vertical stripes of 3 regions
    partition = torch.stack([labels, labels.T])[:, None] == torch.arange(3).view(1, 3, 1, 1)
    collapse = torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1, 1, 1).expand(shape)
    images = torch.linspace(-1, 1, 2 * channels * size * size).view(2, channels, size, size)
    stacks = [torch.zeros(shape), torch.ones(shape), half, partition[:, :, None].float(),
              collapse.contiguous(), torch.full((1, 1, 1, size, size), 0.5)]
    signs = torch.tensor([1.0, -1.0, 1.0]).view(1, 3, 1, 1, 1)
    return [(m, images[:len(m)], (images[:len(m), None] * signs)[:, :m.shape[1]])
            for m in stacks]


def altered(masks: Tensor, images: Tensor, parts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A copy of the case in which every mask, image and part value differs from the original
    (m -> m / 2 + 1/2 below 1/2, m / 2 above; likewise for images and parts in [-1, 1])."""
    def signed(x):
        return torch.where(x > 0, x * 0.5 - 0.5, x * 0.5 + 0.5)
    return torch.where(masks > 0.5, masks * 0.5, masks * 0.5 + 0.5), signed(images), signed(parts)


def with_examples(cases: list[tuple], *extra) -> callable:
    """Decorate a @given property with one explicit example per constructed case."""
    def decorate(test):
        for case in cases:
            test = example(case, *extra)(test)
        return test

    return decorate


def check_mask_loss(loss_cls: type, config: object = None, *,
                    zero_at: st.SearchStrategy | None = None,
                    stacks: st.SearchStrategy | None = None) -> None:
    """Check that a mask loss is a finite, non-negative scalar, independent of the order of the
    images in the batch and differentiable with finite gradients, for any mask stack (and
    images and parts in [-1, 1]); that it runs on the meta device (shapes alone); and zero on
    everything `zero_at` draws, if given. `stacks` and `zero_at` draw mask stacks, (masks,
    images) pairs or (masks, images, parts) triples.
    Besides what hypothesis draws, every property runs on the constructed cases of
    `constructed_cases`, and batch order is tested on a batch doubled with an altered copy of
    itself, under a permutation that moves every image onto a different one, a reversal and a
    random shuffle: a loss that reads only part of the batch is caught on every run. A failure
    names the property, and hypothesis prints the falsifying example."""
    loss = _build(loss_cls, config)
    cases = _cases(mask_stacks() if stacks is None else stacks)
    constructed = constructed_cases()

    @given(cases)
    @with_examples(constructed)
    def finite_and_non_negative(case):
        value = loss(*case)
        assert value.dim() == 0, f"the loss must be a scalar, got shape {tuple(value.shape)}"
        assert torch.isfinite(value), f"the loss is {value.item()}, not finite"
        assert value >= 0, f"the loss is negative: {value.item()}"

    @given(cases, st.randoms(use_true_random=False))
    @with_examples(constructed, random.Random(0))
    def independent_of_batch_order(case, rng):
        other = altered(*case)
        batch = [torch.cat(pair) for pair in zip(case, other)]
        n = len(batch[0])
        shuffled = list(range(n))
        rng.shuffle(shuffled)
        orders = {"every image swapped with its altered copy": [(i + n // 2) % n
                                                                for i in range(n)],
                  "reversed": list(range(n))[::-1], "shuffled": shuffled}
        a = loss(*batch)
        for name, order in orders.items():
            b = loss(*(t[order] for t in batch))
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), \
                f"reordering the batch ({name}) changed the loss from {a.item()} to {b.item()}"

    @given(cases)
    @with_examples(constructed)
    def finite_gradients(case):
        masks, images, parts = (t.clone().requires_grad_(i != 1) for i, t in enumerate(case))
        loss(masks, images, parts).backward()
        assert masks.grad is not None and torch.isfinite(masks.grad).all(), \
            "the gradient is missing or not finite"
        assert parts.grad is None or torch.isfinite(parts.grad).all(), \
            "the gradient to the parts is not finite"

    def runs_on_the_meta_device():  # `vle-kit run` and `check` size a step there
        masks = torch.zeros(2, 3, 1, 8, 8, device="meta", requires_grad=True)
        try:
            loss(masks, torch.zeros(2, 3, 8, 8, device="meta"),
                 torch.zeros(2, 3, 3, 8, 8, device="meta", requires_grad=True)).backward()
        except (NotImplementedError, RuntimeError) as e:
            raise AssertionError(f"it does not run on shapes alone (the meta device), as "
                                 f"vle-kit sizes a training step; no data-dependent Python "
                                 f"branches: {e}") from e

    properties = [finite_and_non_negative, independent_of_batch_order, finite_gradients,
                  runs_on_the_meta_device]
    if zero_at is not None:
        @given(_cases(zero_at))
        def zero_at_its_ideal(case):
            value = loss(*case).item()
            assert abs(value) < 1e-5, f"the loss is {value} where it should be 0"

        properties.append(zero_at_its_ideal)
    for check in properties:
        try:
            check()
        except AssertionError as e:
            raise AssertionError(f"{loss_cls.__name__}: property {check.__name__} failed: "
                                 f"{e}") from e


# what the other slots hold while one part is checked: the defaults, except no memory (faster)
# and a combiner that uses masks (so a saliency head's gradients are checked)
PARTNERS = {"memory": "none", "combiner": "masked_sum"}
UNDER_TEST = "under_test"


def check_model_part(slot: str, factory: type, config: object = None, *, image_channels: int = 3,
                     size: int = 16, tokens_max: int = 3) -> None:
    """Build a tiny VLE with `factory` in `slot` (built-ins in the other slots) and check its
    contract: right shapes for K = 1 and K = tokens_max and a batch of 1 or 2, finite values,
    and gradients that reach every parameter of the part."""
    from vle_kit import hookimpl
    from vle_kit.build import build_model
    from vle_kit.config import Choice
    from vle_kit.plugins import load_registry
    from vle_kit.recipe import validate
    from vle_kit.slots import BY_NAME, MODEL_SLOTS

    if slot not in {s.name for s in MODEL_SLOTS}:
        raise ValueError(f"slot must be one of {', '.join(s.name for s in MODEL_SLOTS)}, "
                         f"got {slot!r}")

    class PartUnderTest:
        @staticmethod
        @hookimpl(specname=BY_NAME[slot].hook)
        def register(register):
            register(UNDER_TEST, factory)

    registry = load_registry([PartUnderTest()])
    model_table = {"width": 16, "token": {"channels": 4, "size": 4},
                   **{s: {"use": use} for s, use in PARTNERS.items()}, slot: {"use": UNDER_TEST}}
    recipe = validate({"model": model_table, "tokens": {"max": tokens_max},
                       "data": {"size": size}}, registry, f"the {slot} contract")
    if config is not None:
        model = attrs.evolve(recipe.model, **{slot: Choice(UNDER_TEST, config)})
        recipe = attrs.evolve(recipe, model=model)
    model = build_model(recipe, registry, image_channels)
    part = getattr(model, slot)
    name = factory.__name__
    for batch in (1, 2):
        x = torch.rand(batch, image_channels, size, size) * 2 - 1
        for k in (1, tokens_max):
            out = model(x, k)
            assert out.tokens.shape == (batch, k, 4, 4, 4), f"{name}: token shape"
            assert out.recons.shape == out.parts.shape == (batch, k, image_channels, size, size), \
                f"{name}: reconstruction shape {tuple(out.recons.shape)}"
            assert out.masks is None or out.masks.shape == (batch, k, 1, size, size), \
                f"{name}: mask shape {tuple(out.masks.shape)}"
            assert torch.isfinite(out.recons).all(), f"{name}: reconstruction not finite"
            assert out.masks is None or ((out.masks >= 0) & (out.masks <= 1)).all(), \
                f"{name}: masks outside [0, 1]"
    model.zero_grad()
    loss = out.recons.pow(2).mean() + (0 if out.masks is None else out.masks.mean())
    loss.backward()
    for pname, p in part.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), \
            f"{name}: no finite gradient reaches parameter {pname}"

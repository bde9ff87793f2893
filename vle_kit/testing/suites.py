"""Property suites a plug-in author calls in one line from a test."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from vle_kit.testing.strategies import mask_stacks


def _build(loss_cls, config):
    return loss_cls(loss_cls.Config() if config is None else config)


def check_mask_loss(loss_cls: type, config: object = None, *,
                    zero_at: st.SearchStrategy[torch.Tensor] | None = None,
                    stacks: st.SearchStrategy[torch.Tensor] | None = None) -> None:
    """Check that a mask loss is finite, non-negative, independent of the order of the images in
    the batch and differentiable with finite gradients, for any mask stack; and zero on every
    stack `zero_at` draws, if given. A failure names the property and the falsifying stack."""
    loss = _build(loss_cls, config)
    stacks = stacks or mask_stacks()

    @given(stacks)
    def finite_and_non_negative(masks):
        value = loss(masks)
        assert value.dim() == 0, f"the loss must be a scalar, got shape {tuple(value.shape)}"
        assert torch.isfinite(value), f"the loss is {value.item()}, not finite"
        assert value >= 0, f"the loss is negative: {value.item()}"

    @given(stacks, st.randoms(use_true_random=False))
    def independent_of_batch_order(masks, random):
        order = list(range(masks.shape[0]))
        random.shuffle(order)
        a, b = loss(masks), loss(masks[order])
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), \
            f"reordering the batch changed the loss from {a.item()} to {b.item()}"

    @given(stacks)
    def finite_gradients(masks):
        masks = masks.clone().requires_grad_(True)
        loss(masks).backward()
        assert masks.grad is not None and torch.isfinite(masks.grad).all(), \
            "the gradient is missing or not finite"

    properties = [finite_and_non_negative, independent_of_batch_order, finite_gradients]
    if zero_at is not None:
        @given(zero_at)
        def zero_at_its_ideal(masks):
            value = loss(masks).item()
            assert abs(value) < 1e-6, f"the loss is {value} where it should be 0"

        properties.append(zero_at_its_ideal)
    for check in properties:
        try:
            check()
        except AssertionError as e:
            raise AssertionError(f"{loss_cls.__name__}: property {check.__name__} failed: "
                                 f"{e}") from e

"""Test helpers for plug-in authors: hypothesis strategies and one-call property suites."""

from vle_kit.testing.suites import check_mask_loss

__all__ = ["check_mask_loss"]

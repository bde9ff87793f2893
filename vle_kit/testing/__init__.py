"""Test helpers for plug-in authors: hypothesis strategies and one-call property suites.

    from vle_kit.testing import check_mask_loss, check_model_part

    def test_my_loss():
        check_mask_loss(MyLoss, zero_at=strategies.binary_stacks())

Hypothesis profiles: `dev` (25 examples, the default) and `thorough` (100), chosen by the
HYPOTHESIS_PROFILE environment variable once `register_profiles()` has run (vle_kit's own
tests call it from their conftest).
"""

import os

from hypothesis import settings

from vle_kit.testing.suites import check_mask_loss, check_model_part

__all__ = ["check_mask_loss", "check_model_part", "register_profiles"]


def register_profiles() -> None:
    """Register the `dev` and `thorough` profiles and load the one HYPOTHESIS_PROFILE names."""
    settings.register_profile("dev", max_examples=25, deadline=None)
    settings.register_profile("thorough", max_examples=100, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

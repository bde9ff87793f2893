"""`none`: no token has a place; each may claim anything (the default)."""

from vle_kit import hookimpl
from vle_kit.interfaces import Locator


class NoLocator(Locator):
    pass


@hookimpl
def register_locators(register):
    register("none", NoLocator)

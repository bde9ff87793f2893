"""Errors a user can cause and fix; the CLI prints them as one line each, without a traceback."""

from __future__ import annotations


class VleKitError(Exception):
    """A problem the user can fix: bad input, a missing file, a refused operation."""


class PluginError(VleKitError):
    """A plug-in could not be loaded or registered."""


class RecipeError(VleKitError):
    """Every problem found in one recipe, each a line `file: dotted.key: what is wrong`."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))

    def __reduce__(self):  # rebuilt from its arguments, so it crosses process boundaries whole
        return type(self), (self.source, self.problems)


class Interrupted(VleKitError):
    """The user asked a run to stop; a checkpoint was saved."""

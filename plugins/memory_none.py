"""`none`: no memory; each step sees only its own input."""

from vle_kit import hookimpl
from vle_kit.interfaces import Memory


class NoMemory(Memory):
    def forward(self, feat, memory):
        return feat, None


@hookimpl
def register_memories(register):
    register("none", NoMemory)

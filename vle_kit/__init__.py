"""vle_kit: train and study Variable Length Embeddings of images."""

from vle_kit.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]

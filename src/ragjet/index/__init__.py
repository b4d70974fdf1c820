"""Vector indexes behind one small protocol: add, remove, search, save, load."""

from ragjet.index.flat import FlatIndex

__all__ = ["FlatIndex"]

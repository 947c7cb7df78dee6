"""Separation networks, one file per architecture, all plain ``nn.Module``s."""

from .bag import StemBag
from .mdx23c import MDX23C

__all__ = ["MDX23C", "StemBag"]

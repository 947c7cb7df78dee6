"""Inference engine: chunking, batching, precision, overlap-add."""

from .device import resolve_device
from .overlap_add import separate_tensor
from .precision import resolve_precision
from .runner import ChunkRunner

__all__ = ["ChunkRunner", "resolve_device", "resolve_precision", "separate_tensor"]

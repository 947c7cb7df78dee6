"""Inference engine: chunking, batching, precision, backends, overlap-add (in memory or streaming)."""

from .device import resolve_device
from .overlap_add import separate_tensor
from .precision import resolve_precision
from .runner import ChunkRunner
from .streaming import OverlapAddStream, separate_stream

__all__ = ["ChunkRunner", "OverlapAddStream", "resolve_device", "resolve_precision", "separate_stream",
           "separate_tensor"]

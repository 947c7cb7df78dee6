"""stemforge: fast, memory-lean music source separation.

``from stemforge import Separator`` is resolved lazily so that ``stemforge --help`` and
light imports do not pay for torch.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Separator", "StemforgeError", "__version__"]


def __getattr__(name: str):
    if name == "Separator":
        from .separator import Separator

        return Separator
    if name == "StemforgeError":
        from .errors import StemforgeError

        return StemforgeError
    raise AttributeError(f"module 'stemforge' has no attribute '{name}'")

"""``python -m stemforge.train --config ... --data ... --results ...`` (the entry point for torchrun)."""

import sys

from .cli import main

sys.exit(main())

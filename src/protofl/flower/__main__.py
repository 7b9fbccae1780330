"""``python -m protofl.flower ...``: the Flower helper commands without the main CLI."""

from __future__ import annotations

import sys

from protofl.flower.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""``python -m emostream``: the same command line as ``emostream``."""

from __future__ import annotations

import sys

from emostream.cli import main

if __name__ == "__main__":
    sys.exit(main())

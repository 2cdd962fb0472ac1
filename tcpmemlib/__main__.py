"""``python -m tcpmemlib report ...``: the same as the ``tcpmem`` console script."""

from __future__ import annotations

import sys

from tcpmemlib.cli import main

if __name__ == "__main__":
    sys.exit(main())

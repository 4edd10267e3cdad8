"""``python -m sds``: the same command as ``sds``."""

import sys

from sds.cli import main

sys.exit(main())

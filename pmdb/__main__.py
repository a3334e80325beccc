"""``python -m pmdb``: the same as the ``pmdb`` console script."""

import sys

from pmdb.cli import main

sys.exit(main())

"""Entry point: python -m tests.vmlab ..."""

import sys

from tests.vmlab.cli import main

sys.exit(main())

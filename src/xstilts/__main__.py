"""`python -m xstilts`: the command line, as `xstilts`."""

import sys

from xstilts.cli import main

sys.exit(main())

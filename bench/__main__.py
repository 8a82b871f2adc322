"""`python -m bench`: the archbench command line."""

import sys

from bench.cli import main

sys.exit(main())

"""`python -m rackfit` runs the CLI."""

import sys

from rackfit.cli import main

sys.exit(main())

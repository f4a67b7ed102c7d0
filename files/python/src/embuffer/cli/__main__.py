"""`python -m embuffer.cli`, as the tests and benchmarks run it."""

import sys

from embuffer.cli import main

sys.exit(main())

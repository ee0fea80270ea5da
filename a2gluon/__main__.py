"""python -m a2gluon COMMAND ...: the same door as the `a2gluon` console script."""

import sys

from .cli import main

sys.exit(main())

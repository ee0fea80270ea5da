"""Entry point: python -m a2gluon.export (see a2gluon.cli.export)."""

import sys

from .cli.export import main

if __name__ == "__main__":
    sys.exit(main())

"""Entry point: python -m a2gluon.predict (see a2gluon.cli.predict)."""

import sys

from .cli.predict import main

if __name__ == "__main__":
    sys.exit(main())

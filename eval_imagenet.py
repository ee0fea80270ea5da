#!/usr/bin/env python
"""Single centre-crop top-1/top-5 of a trained or exported model (see `python eval_imagenet.py --help`)."""

import sys

from a2gluon.cli import run

if __name__ == "__main__":
    sys.exit(run("eval", prog="eval_imagenet.py"))

#!/usr/bin/env python
"""Train an a2gluon model on ImageNet RecordIO data (see `python train_imagenet.py --help`)."""

import sys

from a2gluon.cli import run

if __name__ == "__main__":
    sys.exit(run("train", prog="train_imagenet.py"))

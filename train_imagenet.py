#!/usr/bin/env python
"""Train an a2gluon model on ImageNet RecordIO data (see `python train_imagenet.py --help`)."""

import sys

from a2gluon.cli.train import main

if __name__ == "__main__":
    sys.exit(main(prog="train_imagenet.py"))

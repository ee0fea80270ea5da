#!/usr/bin/env python
"""Train an a2gluon video model on video files (see `python train_video.py --help`)."""

import sys

from a2gluon.cli.train_video import main

if __name__ == "__main__":
    sys.exit(main(prog="train_video.py"))

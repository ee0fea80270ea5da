#!/usr/bin/env python
"""Train an a2gluon video model on video files (see `python train_video.py --help`)."""

import sys

from a2gluon.cli import run

if __name__ == "__main__":
    sys.exit(run("train-video", prog="train_video.py"))

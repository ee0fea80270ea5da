#!/usr/bin/env python
"""Clip and video top-1/top-5 of a trained video model (see `python eval_video.py --help`)."""

import sys

from a2gluon.cli import run

if __name__ == "__main__":
    sys.exit(run("eval-video", prog="eval_video.py"))

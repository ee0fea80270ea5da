#!/usr/bin/env python
"""Clip and video top-1/top-5 of a trained video model (see `python eval_video.py --help`)."""

import sys

from a2gluon.cli.eval_video import main

if __name__ == "__main__":
    sys.exit(main(prog="eval_video.py"))

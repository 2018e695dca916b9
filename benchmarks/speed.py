"""Speed benchmark: every method against its floor and its peers, in one process.

    python benchmarks/speed.py [--models resnet50,efficientnet_lite0] [--batches 1,8,32]
                               [--methods gradient,...] [--device cpu|cuda] [--smoothgrad-n 10]

Writes benchmarks/results/speed-<device>.json and .md (the same as `salmap speed`).
"""

import sys

from salmap.cli import main

if __name__ == "__main__":
    sys.exit(main(["speed", *sys.argv[1:]]))

"""The benchmark as a Ray job (the same as `dynamo-ray bench`).

    python jobs/bench.py [--quick] [--out DIR] [--memory] [--scale]
    ray job submit --working-dir . -- python jobs/bench.py --quick
"""

import argparse
import sys

from dynamo_ray.tools import bench

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true")
parser.add_argument("--smoke", action="store_true")
parser.add_argument("--out", default="bench-out")
parser.add_argument("--memory", action="store_true")
parser.add_argument("--scale", action="store_true")
args = parser.parse_args()
bench.run("smoke" if args.smoke else "quick" if args.quick else "full", args.out, args.memory,
          args.scale)
sys.exit(0)

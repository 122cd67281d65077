"""Two Ray jobs sharing the store: one writes, a later one reads what it wrote.

    ray job submit --working-dir . -- python jobs/roundtrip.py --write --tag run1
    ray job submit --working-dir . -- python jobs/roundtrip.py --check --tag run1
"""

import argparse
import sys

import dynamo_ray as dr

parser = argparse.ArgumentParser()
parser.add_argument("--name", default="dynamo")
parser.add_argument("--tag", default="roundtrip")
parser.add_argument("--keys", type=int, default=1000)
mode = parser.add_mutually_exclusive_group(required=True)
mode.add_argument("--write", action="store_true")
mode.add_argument("--check", action="store_true")
args = parser.parse_args()

table = dr.connect(args.name).table()
expected = {f"{args.tag}:{i}": {"i": i, "tag": args.tag} for i in range(args.keys)}
if args.write:
    table.load(expected, progress=False)
    print(f"wrote {len(expected)} keys tagged {args.tag!r}")
    sys.exit(0)
got = table.get_many(list(expected))
wrong = [k for k, v in expected.items() if got[k].value != v]
print(f"read {len(got)} keys tagged {args.tag!r}: {len(wrong)} missing or wrong")
sys.exit(1 if wrong else 0)

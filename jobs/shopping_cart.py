"""The shopping-cart story as a Ray job, against a store started with `dynamo-ray up`.

    RAY_AUTH_MODE=token ray job submit --working-dir . -- python jobs/shopping_cart.py [--name dynamo]
"""

import argparse
import uuid

import dynamo_ray as dr
from dynamo_ray.tools.demo import cart_story

parser = argparse.ArgumentParser()
parser.add_argument("--name", default="dynamo", help="store name")
args = parser.parse_args()

store = dr.connect(args.name)
cart = cart_story(store, customer=f"customer-{uuid.uuid4().hex[:8]}")
print(f"shopping cart job done: {cart}")

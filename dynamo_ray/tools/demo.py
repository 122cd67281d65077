"""The shopping-cart stories of the paper, told against a running store (`dynamo-ray demo`,
`jobs/shopping_cart.py`).

Two clients, a phone and a laptop, read the same empty cart and each add an item without seeing
the other's write. Dynamo keeps both as siblings; the application merges them with a set union
and writes the merged cart back with the read's context, which resolves the conflict. Then the
same cart is written on both sides of a network partition: both sides accept the add.
"""

from __future__ import annotations

import time
from typing import Callable

from ..core import merges
from ..client.store import Store


def cart_story(store: Store, customer: str = "alice", say: Callable[[str], None] = print) -> list:
    """Returns the final cart; raises AssertionError if the store broke the story."""
    carts = store.table("carts")
    say(f"Two clients open {customer}'s empty cart.")
    phone_view = carts.get(customer)
    laptop_view = carts.get(customer)
    say(f"  phone reads:  {phone_view.values}    laptop reads: {laptop_view.values}")
    carts.put(customer, (phone_view.value or []) + ["book"], context=phone_view.context)
    say("  phone adds 'book'   (with the context of its read)")
    carts.put(customer, (laptop_view.value or []) + ["lamp"], context=laptop_view.context)
    say("  laptop adds 'lamp'  (with the context of its own, older read)")
    both = carts.get(customer)
    say(f"The next read returns {len(both.values)} siblings: {both.values}")
    assert len(both.values) == 2, f"expected two siblings, got {both.values}"
    merged = merges.union(both.values)
    say(f"The application merges them with union: {merged}")
    carts.put(customer, merged, context=both.context)
    final = carts.get(customer)
    say(f"Written back with the read's context, the cart reads as one value: {final.value}")
    assert final.values == [merged], f"expected one merged value, got {final.values}"
    return final.value


def partition_story(store: Store, customer: str = "bob", say: Callable[[str], None] = print) -> list:
    """The cart written on both sides of a network partition, healed, read as siblings and
    merged with union. Needs a store of at least four nodes named node-1 .. node-4."""
    carts = store.table("carts")
    carts.put(customer, ["book"])
    say(f"{customer}'s cart holds ['book']. The network splits: node-1, node-2 | node-3, node-4.")
    store.partition(["node-1", "node-2"], ["node-3", "node-4"])
    try:
        for via, item in (("node-1", "lamp"), ("node-3", "pen")):
            side = store.table("carts", via=via)
            got = side.get(customer)
            side.put(customer, (got.value or []) + [item], context=got.context)
            say(f"  through {via}: read {got.value}, added {item!r}: accepted (sloppy quorum)")
    finally:
        store.heal()
    say("The partition heals; hinted handoff returns the writes each side kept for the other.")
    deadline = time.monotonic() + 30
    while store.status()["hints_pending"].sum() and time.monotonic() < deadline:
        time.sleep(0.2)
    both = carts.get(customer, r=3)
    say(f"The read returns {len(both.values)} siblings: {both.values}")
    assert len(both.values) == 2, f"expected two siblings, got {both.values}"
    merged = merges.union(both.values)
    carts.put(customer, merged, context=both.context)
    final = carts.get(customer).value
    say(f"Union merges them and the write-back resolves the conflict: {final}")
    assert sorted(final) == ["book", "lamp", "pen"], final
    return final

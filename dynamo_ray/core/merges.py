"""Semantic reconciliation of siblings (Dynamo §4.4: the application merges on read).

A merge function takes the list of sibling values of one key and returns one value. Pass it as
``store.table(name, merge=fn)``: reads then return the merged value, and writing it back with the
read's context resolves the conflict.
"""

from __future__ import annotations

from typing import Any, Sequence


def union(siblings: Sequence[Any]) -> list:
    """The shopping cart's merge: every item that is in any sibling, once, in first-seen order.

    Siblings must be lists (or None for an empty cart). An item removed on one side and kept
    on another comes back: the cart never loses an add, as the paper chose."""
    merged: list = []
    seen: set = set()
    unhashable: list = []
    for sibling in siblings:
        for item in sibling or ():
            try:
                if item in seen:
                    continue
                seen.add(item)
            except TypeError:  # dicts and lists as items: compare by equality
                if item in unhashable:
                    continue
                unhashable.append(item)
            merged.append(item)
    return merged


def last_writer(siblings: Sequence[Any]) -> Any:
    """Keep the last sibling (siblings come oldest first): last-write-wins on read."""
    return siblings[-1]

"""The ring views (dynamo_ray.tools.ringview): the ownership table agrees with the ring it shows,
its hash ranges tile the 128-bit ring, and the picture is written as a PNG."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo_ray.core.ring import HASH_BITS, Ring, claim, key_hash
from dynamo_ray.tools.ringview import (
    COLUMNS,
    draw_ring,
    format_table,
    hash_range,
    ownership_table,
    short_hex,
    walk_steps,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAST = settings(deadline=None, max_examples=50)


def names(count: int) -> list[str]:
    return [f"node-{i + 1}" for i in range(count)]


@st.composite
def rings(draw):
    """(ring, N): Q a power of two 8..256, S 1..12 nodes, N 1..4."""
    q = draw(st.sampled_from((8, 16, 32, 64, 128, 256)))
    s = draw(st.integers(1, min(q, 12)))
    n = draw(st.integers(1, 4))
    return claim(q, names(s), n), n


@FAST
@given(rings())
def test_table_has_one_row_per_partition_owned_as_the_ring_says(shape):
    ring, n = shape
    table = ownership_table(ring, n)
    assert tuple(table.columns) == COLUMNS
    assert len(table) == ring.partitions
    assert list(table["partition"]) == list(range(ring.partitions))
    assert tuple(table["owner"]) == ring.owners


@FAST
@given(rings())
def test_preference_lists_and_fallbacks_match_the_ring(shape):
    ring, n = shape
    table = ownership_table(ring, n)
    for p, preference, fallbacks in zip(
        table["partition"], table["preference_list"], table["fallbacks"]
    ):
        expected = " ".join(f"{ring.owners[v]}/p{v}" for v in ring.preference_list(p, n))
        assert preference == expected
        assert fallbacks == " ".join(f"{ring.owners[v]}/p{v}" for v in ring.fallbacks(p, n))


@pytest.mark.parametrize("q", (1, 2, 8, 64, 1024, 1 << 16))
def test_hash_ranges_tile_the_ring(q):
    ring = Ring(tuple(names(1)) * q)
    ranges = [hash_range(ring, p) for p in range(q)]
    assert ranges[0][0] == 0
    assert all(end + 1 == nxt for (_, end), (nxt, _) in zip(ranges, ranges[1:]))
    assert ranges[-1][1] == 2**HASH_BITS - 1
    assert all(start <= end for start, end in ranges)


@FAST
@given(rings(), st.text(min_size=1, max_size=20))
def test_a_key_falls_in_the_hash_range_of_its_partition(shape, key):
    ring, _ = shape
    start, end = hash_range(ring, ring.partition_of(key))
    assert start <= key_hash(key) <= end


def test_table_shows_ranges_as_shortened_hex():
    table = ownership_table(claim(8, names(3), 3), 3)
    assert table["start"][0] == "0x00000000…"
    assert table["end"][0] == "0x1fffffff…"
    assert table["start"][1] == "0x20000000…"
    assert table["end"][7] == "0xffffffff…"
    assert short_hex(2**HASH_BITS - 1, 32) == "0x" + "f" * 32


def test_format_table_opens_with_the_ring_summary_and_lists_every_partition():
    ring = claim(16, names(5), 3).with_owners(claim(16, names(5), 3).owners)
    text = format_table(ring, 3)
    lines = text.splitlines()
    assert lines[0] == "ring version 2: Q=16 partitions, S=5 nodes, N=3"
    assert lines[2].split() == list(COLUMNS)
    rows = lines[4:]
    assert len(rows) == 16
    assert rows[5].split()[:2] == ["5", ring.owners[5]]
    header, rule = lines[2], lines[3]
    dash_runs = [i for i, c in enumerate(rule) if c == "-" and (i == 0 or rule[i - 1] == " ")]
    starts = [re.search(rf"\b{name}\b", header).start() for name in COLUMNS]
    assert dash_runs == starts, "each column header starts over its rule"


def test_walk_steps_number_the_preference_list_and_mark_skips():
    ring = Ring(("a", "a", "b", "b", "a", "c", "c", "d"))
    assert walk_steps(ring, 6, 3) == [(6, "1"), (7, "2"), (0, "3"), (1, "skip"), (2, "F")]
    assert walk_steps(ring, 0, 3) == [(0, "1"), (1, "skip"), (2, "2"), (3, "skip"),
                                      (4, "skip"), (5, "3"), (6, "skip"), (7, "F")]


def test_walk_steps_end_at_the_preference_list_when_there_is_no_fallback():
    ring = claim(8, names(2), 3)
    steps = walk_steps(ring, 3, 3)
    assert [role for _, role in steps if role != "skip"] == ["1", "2"]


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000


@pytest.mark.parametrize("q, s", [(8, 1), (16, 5), (64, 8)])
def test_draw_ring_writes_a_png(tmp_path, q, s):
    path = tmp_path / "ring.png"
    draw_ring(claim(q, names(s), 3), 3, str(path))
    assert_png(path)


@pytest.mark.parametrize("q, s", [(8, 2), (32, 7), (64, 8)])
def test_draw_ring_writes_a_png_with_a_highlighted_key(tmp_path, q, s):
    path = tmp_path / "ring-key.png"
    draw_ring(claim(q, names(s), 3), 3, str(path), highlight_key="cart:alice")
    assert_png(path)


def test_draw_ring_folds_a_long_walk(tmp_path):
    ring = Ring(("a",) * 15 + ("b",))  # from partition 0 the walk skips 14 partitions of a
    path = tmp_path / "long-walk.png"
    draw_ring(ring, 2, str(path), highlight_key="x")
    assert_png(path)

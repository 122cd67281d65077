"""Views of the ring for people: an ownership table and a picture (DESIGN §2; Dynamo §4.2-4.3).

`ownership_table` lists, per partition, its owner, its slice of the 128-bit hash space, its
preference list and its fallbacks; `format_table` renders it as fixed-width text for the
`dynamo-ray ring` command; `draw_ring` paints the ring to a PNG, optionally following one key
from its position through its preference list and first fallback.

Invariants:
- every figure shown is read from the `Ring` itself (`owners`, `preference_list`, `fallbacks`)
  or from its geometry (Q equal slices of [0, 2**128)); nothing here re-derives placement;
- the hash ranges of the table tile the ring: partition 0 starts at 0, each range ends one
  before the next begins, the last ends at 2**128 - 1.

Pure and read-only: no Ray import, no store, never changes a ring. matplotlib is imported only
inside `draw_ring`, with the Agg backend, so that the CLI and the store never load it.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Sequence

import pandas as pd

from ..core.ring import HASH_BITS, Ring, key_hash, natural_order

if TYPE_CHECKING:
    from matplotlib.axes import Axes

RING_SIZE = 1 << HASH_BITS
COLUMNS = ("partition", "owner", "start", "end", "preference_list", "fallbacks")

# --- the table ----------------------------------------------------------------------------------


def hash_range(ring: Ring, partition: int) -> tuple[int, int]:
    """First and last hash position (inclusive) of ``partition``, one of Q equal slices."""
    width = RING_SIZE // ring.partitions
    return partition * width, (partition + 1) * width - 1


def hex_digits(ring: Ring) -> int:
    """Hex digits that tell partition bounds apart: at least 8, more only when Q > 2**32."""
    partition_bits = ring.partitions.bit_length() - 1
    return max(8, math.ceil(partition_bits / 4))


def short_hex(position: int, digits: int = 8) -> str:
    """A hash position as its leading hex digits out of 32, e.g. ``0x1fffffff…``."""
    full = f"{position:0{HASH_BITS // 4}x}"
    return f"0x{full}" if digits >= len(full) else f"0x{full[:digits]}…"


def vnode_label(ring: Ring, partition: int) -> str:
    """A vnode by its node and partition, e.g. ``node-2/p5``."""
    return f"{ring.owners[partition]}/p{partition}"


def vnode_list(ring: Ring, partitions: Sequence[int]) -> str:
    return " ".join(vnode_label(ring, p) for p in partitions)


def ownership_table(ring: Ring, n: int) -> pd.DataFrame:
    """One row per partition: partition, owner, start, end (hex), preference_list, fallbacks."""
    digits = hex_digits(ring)
    rows = []
    for p in range(ring.partitions):
        start, end = hash_range(ring, p)
        rows.append(
            {
                "partition": p,
                "owner": ring.owners[p],
                "start": short_hex(start, digits),
                "end": short_hex(end, digits),
                "preference_list": vnode_list(ring, ring.preference_list(p, n)),
                "fallbacks": vnode_list(ring, ring.fallbacks(p, n)),
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def ring_summary(ring: Ring, n: int) -> str:
    """One line: ``ring version 3: Q=16 partitions, S=5 nodes, N=3``."""
    s = len(ring.nodes)
    return (
        f"ring version {ring.version}: Q={ring.partitions} partitions, "
        f"S={s} node{'s' if s != 1 else ''}, N={n}"
    )


def format_table(ring: Ring, n: int) -> str:
    """The ownership table as fixed-width text under a one-line summary of the ring."""
    return ring_summary(ring, n) + "\n\n" + _fixed_width(ownership_table(ring, n))


def _fixed_width(frame: pd.DataFrame) -> str:
    """Columns padded to their widest cell: numbers right-aligned, text left-aligned."""
    columns = [str(c) for c in frame.columns]
    cells = [[str(v) for v in frame[c]] for c in frame.columns]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    widths = [max([len(name)] + [len(v) for v in col]) for name, col in zip(columns, cells)]

    def line(values: Sequence[str]) -> str:
        padded = (
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)
        )
        return "  ".join(padded).rstrip()

    rows = [line(columns), line(["-" * w for w in widths])]
    rows += [line(row) for row in zip(*cells)]
    return "\n".join(rows)


# --- the walk of one key --------------------------------------------------------------------------


def walk_steps(ring: Ring, partition: int, n: int) -> list[tuple[int, str]]:
    """The clockwise walk from ``partition`` as far as the first fallback (or the end of the
    preference list when there is none): each partition met with its role, ``"1"``..``"N"``
    for the preference list in order, ``"F"`` for the first fallback, ``"skip"`` for a
    partition whose node is already taken."""
    preference = ring.preference_list(partition, n)
    chosen = list(preference) + list(ring.fallbacks(partition, n)[:1])
    role = {p: str(i + 1) for i, p in enumerate(preference)}
    role.update({p: "F" for p in chosen[len(preference):]})
    q = ring.partitions
    steps = []
    for i in range((chosen[-1] - partition) % q + 1):
        p = (partition + i) % q
        steps.append((p, role.get(p, "skip")))
    return steps


# --- the picture --------------------------------------------------------------------------------

R_OUTER = 1.0
R_INNER = 0.7
R_BADGE = (R_OUTER + R_INNER) / 2
R_WALK = 0.6
R_LABEL = 1.08
WALK_ARCS_UP_TO_Q = 32  # beyond this the arcs on the ring are too short to read: the strip tells
MAX_STRIP_BOXES = 12


def draw_ring(ring: Ring, n: int, path: str, *, highlight_key: str | None = None) -> None:
    """Write a PNG of the ring: Q equal arcs coloured by owner, partition numbers around it,
    and, for ``highlight_key``, the key's position, its preference list numbered in walk order
    and its first fallback, on the ring and again as a strip of the walk below it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if highlight_key is None:
        fig = plt.figure(figsize=(10.5, 7.6))
        ax = fig.add_axes((0.0, 0.0, 0.68, 0.92))
    else:
        fig = plt.figure(figsize=(10.5, 9.4))
        ax = fig.add_axes((0.0, 0.13, 0.68, 0.81))
    try:
        colours = node_colours(ring)
        ax.set_aspect("equal")
        ax.set_xlim(-1.28, 1.28)
        ax.set_ylim(-1.28, 1.28)
        ax.axis("off")
        _draw_partitions(ax, ring, colours)
        _draw_origin(ax)
        _draw_legend(ax, ring, colours)
        if highlight_key is None:
            ax.text(0, 0, "hash 0 at the top,\npositions grow\nclockwise",
                    ha="center", va="center", fontsize=10, color="0.35")
        else:
            _draw_key(ax, ring, n, highlight_key)
            strip = fig.add_axes((0.03, 0.0, 0.94, 0.15))
            _draw_strip(strip, ring, n, highlight_key, colours)
        ax.set_title(ring_summary(ring, n).replace("ring version", "dynamo_ray ring, version"),
                     fontsize=13, pad=10)
        fig.savefig(path, dpi=110, bbox_inches="tight", facecolor="white")
    finally:
        plt.close(fig)


def node_colours(ring: Ring) -> dict[str, tuple]:
    """A qualitative colour per node, in natural name order (node-2 before node-10), so a node
    keeps its colour from one ring version to the next while the node set stays the same."""
    from matplotlib import colormaps

    nodes = sorted(ring.nodes, key=natural_order)
    cmap = colormaps["tab10" if len(nodes) <= 10 else "tab20"]
    return {node: cmap(i % cmap.N) for i, node in enumerate(nodes)}


def _angle(fraction: float) -> float:
    """Degrees counter-clockwise from the x axis of a ring position given as a fraction of
    the ring: 0 at the top, growing clockwise."""
    return 90.0 - 360.0 * fraction


def _polar(fraction: float, radius: float) -> tuple[float, float]:
    theta = math.radians(_angle(fraction))
    return radius * math.cos(theta), radius * math.sin(theta)


def _middle(ring: Ring, partition: int) -> float:
    return (partition + 0.5) / ring.partitions


def _wedge(ring: Ring, partition: int, **style):
    from matplotlib.patches import Wedge

    q = ring.partitions
    return Wedge((0, 0), R_OUTER, _angle((partition + 1) / q), _angle(partition / q),
                 width=R_OUTER - R_INNER, **style)


def _badge(role: str, fontsize: float) -> dict:
    """Text style of a role badge: a white disc, dashed for the fallback."""
    return dict(ha="center", va="center", fontsize=fontsize, fontweight="bold", zorder=5,
                bbox=dict(boxstyle="circle,pad=0.2", facecolor="white", edgecolor="black",
                          linewidth=1.0, linestyle="--" if role == "F" else "-"))


def _draw_partitions(ax: "Axes", ring: Ring, colours: dict[str, tuple]) -> None:
    q = ring.partitions
    label_every = max(1, q // 64)
    fontsize = 10 if q <= 16 else 8.5 if q <= 32 else 7
    for p, owner in enumerate(ring.owners):
        ax.add_patch(_wedge(ring, p, facecolor=colours[owner], edgecolor="white",
                            linewidth=1.0 if q <= 64 else 0.4))
        if p % label_every == 0:
            x, y = _polar(_middle(ring, p), R_LABEL)
            ax.text(x, y, str(p), ha="center", va="center", fontsize=fontsize, color="0.25")


def _draw_origin(ax: "Axes") -> None:
    ax.plot([0, 0], [R_INNER - 0.03, R_OUTER + 0.13], color="0.3", linewidth=0.8, zorder=1)
    ax.text(0, R_OUTER + 0.15, "0 = 2¹²⁸", ha="center", va="bottom", fontsize=8, color="0.3")


def _draw_legend(ax: "Axes", ring: Ring, colours: dict[str, tuple]) -> None:
    from matplotlib.patches import Patch

    held = Counter(ring.owners)
    handles = [
        Patch(facecolor=colour, edgecolor="white",
              label=f"{node}: {held[node]} partition{'s' if held[node] != 1 else ''}")
        for node, colour in colours.items()
    ]
    ax.legend(handles=handles, title="owner", loc="upper left", bbox_to_anchor=(1.0, 1.0),
              frameon=False, fontsize=9, title_fontsize=10)


def _draw_key(ax: "Axes", ring: Ring, n: int, key: str) -> None:
    """On the ring: the key's exact position (a star and a tick), the preference list outlined
    and numbered, the first fallback outlined dashed, and for small Q the walk as arcs."""
    q = ring.partitions
    where = key_hash(key) / RING_SIZE
    chosen = [(p, role) for p, role in walk_steps(ring, ring.partition_of(key), n)
              if role != "skip"]
    badge_size = 9 if q <= 16 else 8 if q <= 32 else 6.5
    for p, role in chosen:
        ax.add_patch(_wedge(ring, p, facecolor="none", edgecolor="black", linewidth=1.6,
                            linestyle="--" if role == "F" else "-", zorder=3))
        x, y = _polar(_middle(ring, p), R_BADGE)
        ax.text(x, y, role, **_badge(role, badge_size))

    if q <= WALK_ARCS_UP_TO_Q:
        stops = [where] + [_middle(ring, p) for p, _ in chosen[1:]]
        for (a, b), (_, role) in zip(zip(stops, stops[1:]), chosen[1:]):
            _walk_arc(ax, a, b, dashed=role == "F", head=13 if q <= 16 else 10)

    x0, y0 = _polar(where, R_WALK)
    x1, y1 = _polar(where, R_OUTER + 0.03)
    ax.plot([x0, x1], [y0, y1], color="black", linewidth=1.2, zorder=4)
    ax.plot([x0], [y0], marker="*", markersize=15, color="gold", markeredgecolor="black",
            zorder=6)
    ax.text(0, 0.1, f"key {key!r}", ha="center", va="center", fontsize=10, fontweight="bold")
    ax.text(0, -0.07, f"hash {short_hex(key_hash(key))}\npartition {ring.partition_of(key)}",
            ha="center", va="center", fontsize=8.5, color="0.25")


def _walk_arc(ax: "Axes", start: float, stop: float, *, dashed: bool, head: float) -> None:
    """A clockwise arc at R_WALK from ring fraction ``start`` to ``stop``, arrow at the end;
    a small gap at each end keeps consecutive arrows apart."""
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path

    if stop <= start:
        stop += 1.0
    gap = min(0.004, (stop - start) / 6)
    start, stop = start + gap, stop - gap
    steps = max(2, int((stop - start) * 180))
    points = [_polar(start + (stop - start) * i / steps, R_WALK) for i in range(steps + 1)]
    ax.add_patch(FancyArrowPatch(path=Path(points), arrowstyle="-|>", mutation_scale=head,
                                 color="black", linewidth=1.3, linestyle="--" if dashed else "-",
                                 shrinkA=0, shrinkB=0, zorder=4))


def _strip_boxes(steps: list[tuple[int, str]]) -> list[tuple[list[int], str]]:
    """Walk steps as boxes: one per partition, or, for a long walk, runs of skipped partitions
    folded into one box."""
    boxes: list[tuple[list[int], str]] = []
    fold = len(steps) > MAX_STRIP_BOXES
    for p, role in steps:
        if fold and role == "skip" and boxes and boxes[-1][1] == "skip":
            boxes[-1][0].append(p)
        else:
            boxes.append(([p], role))
    return boxes


def _draw_strip(ax: "Axes", ring: Ring, n: int, key: str, colours: dict[str, tuple]) -> None:
    """The key's walk laid out straight: the key, then each partition met, clockwise."""
    from matplotlib.patches import FancyArrowPatch, Rectangle

    boxes = _strip_boxes(walk_steps(ring, ring.partition_of(key), n))
    pitch, width = 1.55, 1.15
    ax.set_aspect("equal", anchor="W")
    ax.set_xlim(-2.0, max(len(boxes) * pitch, 8 * pitch))
    ax.set_ylim(-0.75, 1.95)
    ax.axis("off")
    ax.plot([-1.25], [0.5], marker="*", markersize=16, color="gold", markeredgecolor="black")
    ax.text(-1.25, -0.2, f"key {key!r}", ha="center", va="top", fontsize=8.5)
    ax.text(-2.0, 1.85, "the walk, clockwise from the key's partition: numbered = preference "
            "list, F = first fallback, faded = skipped (node already taken)",
            ha="left", va="top", fontsize=9, color="0.25")
    previous_end = -0.9
    for i, (partitions, role) in enumerate(boxes):
        x = i * pitch
        owners = {ring.owners[p] for p in partitions}
        skipped = role == "skip"
        colour = colours[ring.owners[partitions[0]]] if len(owners) == 1 else (0.8, 0.8, 0.8)
        ax.add_patch(Rectangle((x, 0), width, 1, facecolor=colour, alpha=0.3 if skipped else 1,
                               edgecolor="0.6" if skipped else "black", linewidth=1.2,
                               linestyle="--" if role == "F" else "-"))
        if len(partitions) == 1:
            label = f"p{partitions[0]}\n{ring.owners[partitions[0]]}"
        else:
            label = f"p{partitions[0]}–p{partitions[-1]}\n{len(partitions)} skipped"
        ax.text(x + width / 2, 0.5, label, ha="center", va="center", fontsize=8,
                color="0.45" if skipped else "black")
        if not skipped:
            ax.text(x + width / 2, 1.32, role, **_badge(role, 8.5))
        ax.add_patch(FancyArrowPatch((previous_end + 0.05, 0.5), (x - 0.05, 0.5),
                                     arrowstyle="-|>", mutation_scale=11, color="black",
                                     linewidth=1.1, linestyle="--" if role == "F" else "-"))
        previous_end = x + width

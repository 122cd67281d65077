"""Dynamo's Figure 8 (DeCandia et al., SOSP 2007, §6.2), recomputed: load-balancing efficiency of
the three partitioning strategies against the membership metadata each node keeps.

    python jobs/paper_figure8.py [--out out/] [--seeds 20] [--nodes 30] [--replicas 3]

The strategies, as §6.2 describes them, for S nodes and N replicas:

1. T random tokens per node, partition by token value: the S*T tokens cut the ring into S*T
   ranges; a range (previous token, token] is held by the first N distinct nodes met walking
   clockwise from its token.
2. T random tokens per node, Q equal-sized partitions: the tokens only place partitions; a
   partition is held by the first N distinct nodes met walking clockwise from its end. Q is
   fixed (``--strategy2-partitions``, 1024) and T swept, so as S*T grows past Q the partition
   grain shows: the curve peaks and falls, as the paper's does (about 0.88, then 0.84).
3. Q/S tokens per node, Q equal-sized partitions: what dynamo_ray does; the partitions are
   assigned by `dynamo_ray.core.ring.claim` and a partition is held by the first N distinct nodes
   met walking clockwise from it (the ring's preference list). Swept over Q.

Load of a node: the fraction of the hash space whose preference list (N nodes) includes it,
computed exactly from the ranges, as if keys and requests were spread uniformly over the ring.
The preference list and not the primary owner because every write reaches all N replicas and
every replica stores and serves the range: that is the load a node carries, and it is why the
paper fixes N=3 (``--replicas 1`` gives the primary-owner load instead).
Efficiency = mean load / max load over the S nodes (§6.2: average requests per node over the
requests served by the hottest node), averaged over ``--seeds`` random token draws for
strategies 1 and 2; strategy 3 is deterministic (claim depends only on Q and S), so it is run once.

Membership metadata each node keeps (the paper's x axis, in bytes here; node names are kept by
every strategy alike and not counted):
- strategies 1 and 2: every token of every node, a 16-byte ring position and a 2-byte node
  index each: 18 * S * T bytes (Q is one number and the partition grid follows from it);
- strategy 3: the partition map, a 2-byte node index per partition, positions implied by the
  index: 2 * Q bytes.

Pure: no Ray, no store; only `dynamo_ray.core.ring.claim` is borrowed. Prints the table beside the
paper's result, writes ``figure8.png`` into ``--out`` and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

import numpy as np
import pandas as pd

from dynamo_ray.core.ring import claim

NODES = 30  # S in the paper's experiment
REPLICAS = 3  # N
TOKEN_BYTES = 16  # a position on the 128-bit ring
NODE_ID_BYTES = 2  # an index into the member list
TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)  # T, strategies 1 and 2
PARTITIONS = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)  # Q, strategy 3
STRATEGY2_PARTITIONS = 1024
SEEDS = 20

LABELS = {
    1: "Strategy 1: T random tokens per node, partition by token value",
    2: "Strategy 2: T random tokens per node, equal-sized partitions",
    3: "Strategy 3: Q/S tokens per node, equal-sized partitions",
}
PAPER_SAYS = {
    1: "in between; improves slowly with T",
    2: "worst; falls again once S*T nears Q",
    3: "best for a given metadata size",
}

# --- metadata -----------------------------------------------------------------------------------


def token_metadata_bytes(nodes: int, tokens: int) -> int:
    """Strategies 1 and 2: every node's tokens, each a ring position and a node index."""
    return nodes * tokens * (TOKEN_BYTES + NODE_ID_BYTES)


def partition_map_bytes(partitions: int) -> int:
    """Strategy 3: the owner of each partition, in partition order."""
    return partitions * NODE_ID_BYTES


# --- load ---------------------------------------------------------------------------------------


def efficiency(loads: np.ndarray) -> float:
    """Mean load over max load: 1 when every node carries the same."""
    return float(np.mean(loads) / np.max(loads))


def first_distinct(owners: Sequence[int], n: int) -> list[tuple[int, ...]]:
    """For each position of a circular sequence of node ids, the first ``n`` distinct nodes met
    walking forward from it (fewer when the sequence has fewer nodes).

    One backward pass over the sequence twice round: the walk from i is owners[i] followed by
    the walk from i + 1 without owners[i]."""
    size = len(owners)
    doubled = list(owners) * 2
    walks: list[tuple[int, ...]] = [()] * size
    after: tuple[int, ...] = ()
    for i in range(2 * size - 1, -1, -1):
        here = doubled[i]
        after = (here,) + tuple(x for x in after if x != here)[: n - 1]
        if i < size:
            walks[i] = after
    return walks


def random_tokens(
    nodes: int, tokens: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``tokens`` uniform positions in [0, 1) per node: (positions ascending, their node ids)."""
    positions = rng.random(nodes * tokens)
    owners = np.repeat(np.arange(nodes), tokens)
    order = np.argsort(positions)
    return positions[order], owners[order]


def _spread(loads: np.ndarray, holders: Sequence[tuple[int, ...]], shares: Sequence[float]) -> None:
    for walk, share in zip(holders, shares):
        for node in walk:
            loads[node] += share


def strategy1_loads(nodes: int, tokens: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Each token's range (previous token, token] goes to the N distinct nodes from the token."""
    positions, owners = random_tokens(nodes, tokens, rng)
    lengths = np.diff(positions, prepend=positions[-1] - 1.0)
    loads = np.zeros(nodes)
    _spread(loads, first_distinct(owners.tolist(), n), lengths.tolist())
    return loads


def strategy2_loads(
    nodes: int, tokens: int, partitions: int, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Each of Q equal partitions goes to the N distinct nodes from the first token at or after
    the partition's end."""
    positions, owners = random_tokens(nodes, tokens, rng)
    walks = first_distinct(owners.tolist(), n)
    ends = np.arange(1, partitions + 1) / partitions
    first_token = np.searchsorted(positions, ends, side="left") % len(positions)
    loads = np.zeros(nodes)
    _spread(loads, [walks[t] for t in first_token], [1.0 / partitions] * partitions)
    return loads


def strategy3_loads(nodes: int, partitions: int, n: int) -> np.ndarray:
    """Q equal partitions claimed by `ring.claim`; each goes to its preference list."""
    ring = claim(partitions, [f"node-{i + 1}" for i in range(nodes)], n)
    index = {node: i for i, node in enumerate(ring.nodes)}
    loads = np.zeros(nodes)
    walks = first_distinct([index[o] for o in ring.owners], n)
    _spread(loads, walks, [1.0 / partitions] * partitions)
    return loads


# --- the experiment -----------------------------------------------------------------------------


def sweep(
    nodes: int = NODES,
    n: int = REPLICAS,
    tokens: Sequence[int] = TOKENS,
    partitions: Sequence[int] = PARTITIONS,
    strategy2_partitions: int = STRATEGY2_PARTITIONS,
    seeds: int = SEEDS,
) -> pd.DataFrame:
    """One row per (strategy, parameter value): strategy, parameter ("T" or "Q"), value,
    metadata_bytes, efficiency (mean over seeds) and efficiency_sd (0 for strategy 3)."""
    rows = []
    for strategy, loads_of in (
        (1, lambda t, rng: strategy1_loads(nodes, t, n, rng)),
        (2, lambda t, rng: strategy2_loads(nodes, t, strategy2_partitions, n, rng)),
    ):
        for t in tokens:
            # the same token draws for both: strategy 2 differs from 1 only by the partition grid
            runs = [efficiency(loads_of(t, np.random.default_rng([t, seed])))
                    for seed in range(seeds)]
            rows.append(_row(strategy, "T", t, token_metadata_bytes(nodes, t), runs))
    for q in partitions:
        if q >= nodes:
            rows.append(_row(3, "Q", q, partition_map_bytes(q),
                             [efficiency(strategy3_loads(nodes, q, n))]))
    return pd.DataFrame(rows)


def _row(strategy: int, parameter: str, value: int, metadata: int, runs: list[float]) -> dict:
    return {"strategy": strategy, "parameter": parameter, "value": value,
            "metadata_bytes": metadata, "efficiency": float(np.mean(runs)),
            "efficiency_sd": float(np.std(runs))}


def format_results(frame: pd.DataFrame) -> str:
    """The table, strategy by strategy, each headed by what the paper found for it."""
    lines = [f"{'strategy':>8}  {'param':>9}  {'metadata (B)':>12}  {'efficiency':>10}  "
             f"{'± sd':>6}"]
    for strategy, rows in frame.groupby("strategy", sort=True):
        lines.append(f"-- {LABELS[strategy]}  [paper: {PAPER_SAYS[strategy]}]")
        for r in rows.itertuples():
            lines.append(f"{strategy:>8}  {r.parameter + '=' + str(r.value):>9}  "
                         f"{r.metadata_bytes:>12,}  {r.efficiency:>10.3f}  {r.efficiency_sd:>6.3f}")
    return "\n".join(lines)


def compare_at_equal_metadata(frame: pd.DataFrame) -> str:
    """Two readings of the figure: efficiency at about equal metadata (strategy 3 at its largest
    Q against the smallest sweep point of 1 and 2 with at least as much), and metadata at equal
    efficiency (the least strategy 3 needs to match strategy 1's best)."""
    three = frame[frame.strategy == 3].sort_values("value")
    largest = three.iloc[-1]
    lines = [f"equal metadata:   strategy 3 Q={largest.value} ({largest.metadata_bytes:,} B) "
             f"{largest.efficiency:.3f}"]
    for strategy in (1, 2):
        rows = frame[(frame.strategy == strategy)
                     & (frame.metadata_bytes >= largest.metadata_bytes)]
        if len(rows):
            r = rows.sort_values("metadata_bytes").iloc[0]
            lines[-1] += (f"; strategy {strategy} T={r.value} ({r.metadata_bytes:,} B) "
                          f"{r.efficiency:.3f}")
    one = frame[frame.strategy == 1].sort_values("efficiency")
    if len(one):
        best1 = one.iloc[-1]
        matching = three[three.efficiency >= best1.efficiency]
        if len(matching):
            m = matching.iloc[0]
            lines.append(f"equal efficiency: strategy 1's best, {best1.efficiency:.3f} with "
                         f"T={best1.value} ({best1.metadata_bytes:,} B), is matched by strategy 3 "
                         f"Q={m.value} ({m.metadata_bytes:,} B): "
                         f"{best1.metadata_bytes / m.metadata_bytes:,.0f}x less metadata")
    return "\n".join(lines)


def plot(frame: pd.DataFrame, path: str, *, nodes: int = NODES, n: int = REPLICAS,
         strategy2_partitions: int = STRATEGY2_PARTITIONS) -> None:
    """Efficiency against metadata size (log x), one line per strategy, as the paper draws it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {1: dict(color="tab:blue", marker="o", zorder=3),
              2: dict(color="tab:orange", marker="s", linestyle="--", zorder=2),
              3: dict(color="tab:green", marker="^", zorder=3)}
    fig, ax = plt.subplots(figsize=(9, 5.6))
    try:
        for strategy, rows in frame.groupby("strategy", sort=True):
            rows = rows.sort_values("metadata_bytes")
            style = styles[strategy]
            label = LABELS[strategy] + (f" (Q={strategy2_partitions})" if strategy == 2 else "")
            ax.plot(rows.metadata_bytes, rows.efficiency, label=label, linewidth=1.6,
                    markersize=5, **style)
            ax.fill_between(rows.metadata_bytes, rows.efficiency - rows.efficiency_sd,
                            rows.efficiency + rows.efficiency_sd, color=style["color"],
                            alpha=0.12, linewidth=0)
            for r in rows.itertuples():
                if strategy != 2:  # 2 shares 1's x values: label one of them only
                    ax.annotate(f"{r.parameter}={r.value}", (r.metadata_bytes, r.efficiency),
                                textcoords="offset points", xytext=(4, -11 if strategy == 1 else 6),
                                fontsize=7, color=style["color"])
        ax.set_xscale("log")
        ax.set_ylim(0.4, 1.02)
        ax.set_xlabel("size of membership metadata kept by each node (bytes, log scale)")
        ax.set_ylabel("efficiency (mean load / max load), band: ± 1 sd over seeds")
        ax.set_title(f"Load-balancing efficiency of the three strategies, S={nodes} nodes, N={n}\n"
                     "(after Dynamo, SOSP 2007, Figure 8)", fontsize=11)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8.5)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="directory for figure8.png (default out/)")
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--nodes", type=int, default=NODES, help="S")
    parser.add_argument("--replicas", type=int, default=REPLICAS, help="N")
    parser.add_argument("--tokens", type=int, nargs="+", default=list(TOKENS),
                        help="T values for strategies 1 and 2")
    parser.add_argument("--partitions", type=int, nargs="+", default=list(PARTITIONS),
                        help="Q values for strategy 3 (powers of two)")
    parser.add_argument("--strategy2-partitions", type=int, default=STRATEGY2_PARTITIONS)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    frame = sweep(args.nodes, args.replicas, args.tokens, args.partitions,
                  args.strategy2_partitions, args.seeds)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "figure8.png")
    plot(frame, path, nodes=args.nodes, n=args.replicas,
         strategy2_partitions=args.strategy2_partitions)

    print(f"Dynamo Figure 8: S={args.nodes} nodes, N={args.replicas}, load = share of the hash "
          f"space in a node's preference lists, {args.seeds} seeds for strategies 1 and 2")
    print(format_results(frame))
    print()
    print(compare_at_equal_metadata(frame))
    print("paper (§6.2): strategy 3 achieves the best efficiency and strategy 2 the worst; "
          "strategy 3 needs about three orders of magnitude less metadata than strategy 1")
    print(f"figure: {path}   ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Dynamo's Figure 8 recomputed (jobs/paper_figure8.py; Dynamo §6.2): efficiencies are ratios in
(0, 1], strategy 3 beats strategy 1 at comparable metadata, and the figure is written."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from dynamo_ray.core.ring import claim

JOB = Path(__file__).resolve().parents[2] / "jobs" / "paper_figure8.py"
SMALL = dict(nodes=30, n=3, tokens=(1, 4, 16), partitions=(32, 256, 1024),
             strategy2_partitions=256, seeds=3)


def load_job():
    spec = importlib.util.spec_from_file_location("paper_figure8", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fig8():
    return load_job()


@pytest.fixture(scope="module")
def frame(fig8):
    return fig8.sweep(**SMALL)


def test_sweep_has_a_row_per_strategy_and_parameter(frame):
    assert sorted(frame.strategy.unique()) == [1, 2, 3]
    assert list(frame[frame.strategy == 1].value) == [1, 4, 16]
    assert list(frame[frame.strategy == 3].value) == [32, 256, 1024]


def test_efficiencies_lie_in_zero_to_one(frame):
    assert ((frame.efficiency > 0) & (frame.efficiency <= 1)).all()


def test_strategy3_at_its_largest_q_beats_strategy1_at_comparable_metadata(frame):
    three = frame[frame.strategy == 3].sort_values("value").iloc[-1]
    one = frame[(frame.strategy == 1) & (frame.metadata_bytes >= three.metadata_bytes)]
    assert len(one), "the sweep has a strategy-1 point with at least as much metadata"
    rival = one.sort_values("metadata_bytes").iloc[0]
    assert three.efficiency >= rival.efficiency


def test_metadata_formulas(fig8):
    assert fig8.token_metadata_bytes(30, 4) == 30 * 4 * (16 + 2)
    assert fig8.partition_map_bytes(1024) == 2048


def test_first_distinct_walks_like_the_ring_preference_list(fig8):
    ring = claim(64, [f"node-{i}" for i in range(7)], 3)
    index = {node: i for i, node in enumerate(ring.nodes)}
    walks = fig8.first_distinct([index[o] for o in ring.owners], 3)
    for p in range(ring.partitions):
        assert walks[p] == tuple(index[ring.owners[v]] for v in ring.preference_list(p, 3))


def test_loads_add_up_to_n_whole_rings(fig8):
    rng = np.random.default_rng(0)
    assert fig8.strategy1_loads(30, 8, 3, rng).sum() == pytest.approx(3.0)
    assert fig8.strategy2_loads(30, 8, 256, 3, rng).sum() == pytest.approx(3.0)
    assert fig8.strategy3_loads(30, 256, 3).sum() == pytest.approx(3.0)


def test_equal_loads_are_fully_efficient(fig8):
    assert fig8.efficiency(np.full(5, 0.2)) == 1.0
    assert fig8.efficiency(np.array([1.0, 3.0])) == pytest.approx(2 / 3)


def test_main_writes_the_figure_and_exits_zero(fig8, tmp_path, capsys):
    code = fig8.main(["--out", str(tmp_path / "out"), "--seeds", "2", "--tokens", "1", "8",
                      "--partitions", "32", "512", "--strategy2-partitions", "256"])
    assert code == 0
    png = (tmp_path / "out" / "figure8.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    printed = capsys.readouterr().out
    assert "Strategy 3" in printed and "paper" in printed

"""Config loading and validation (pure: no Ray)."""

import os

import pytest

from dynamo_ray import config
from dynamo_ray.errors import ConfigError

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def test_builtin_defaults_equal_configs_local_yaml():
    assert config.load(os.path.join(CONFIGS, "local.yaml")) == config.load(None)


def test_every_shipped_config_loads():
    for name in os.listdir(CONFIGS):
        if name.endswith(".yaml") and name != "ray-cluster.yaml":
            config.load(os.path.join(CONFIGS, name))


def test_overrides_merge_into_nested_sections_and_tables():
    cfg = config.load(None, nodes=3, tables={"t": {"n": 3, "r": 1, "w": 3}},
                      timeouts={"request_ms": 50})
    assert cfg.nodes == 3 and cfg.timeouts.request_ms == 50
    assert set(cfg.tables) == {"default", "carts", "cache", "t"}
    assert (cfg.tables["t"].r, cfg.tables["t"].w) == (1, 3)
    assert cfg.limits.max_key_bytes == 2048


def test_a_file_that_declares_tables_declares_all_of_them(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("nodes: 1\npartitions: 4\ntables:\n  only: {n: 1, r: 1, w: 1}\n")
    assert set(config.load(str(path)).tables) == {"only"}


@pytest.mark.parametrize("overrides, field", [
    (dict(tables={"t": {"r": 4}}), "tables.t.r"),
    (dict(tables={"t": {"w": 0}}), "tables.t.w"),
    (dict(tables={"t": {"conflict": "newest"}}), "tables.t.conflict"),
    (dict(tables={"t": {"colour": 1}}), "tables.t.colour"),
    (dict(partitions=24), "partitions"),
    (dict(nodes=2), "tables.default.n"),
    (dict(nodes=0), "nodes"),
    (dict(placement="cloud"), "placement"),
    (dict(limits={"max_key_bytes": "big"}), "limits.max_key_bytes"),
    (dict(handoff={"interval_s": -1}), "handoff.interval_s"),
    (dict(read_repair="yes"), "read_repair"),
    (dict(unknown=1), "unknown"),
    (dict(timeouts=5), "timeouts"),
])
def test_bad_values_raise_config_error_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        config.load(None, **overrides)


@pytest.mark.parametrize("table, field", [
    ({"codec": "json"}, "tables.t.codec"),
    ({"ttl_s": -1}, "tables.t.ttl_s"),
    ({"ttl_s": "soon"}, "tables.t.ttl_s"),
    ({"ttl_s": 0}, "tables.t.ttl_s"),
    ({"eviction": "lru"}, "tables.t.eviction"),
    ({"max_memory_mb": 8}, "tables.t.max_memory_mb"),
    ({"max_memory_mb": -1, "eviction": "lru"}, "tables.t.max_memory_mb"),
    ({"max_memory_mb": 8, "eviction": "lfu"}, "tables.t.eviction"),
])
def test_bad_cache_settings_raise_config_error_naming_the_field(table, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        config.load(None, tables={"t": table})


def test_one_config_error_names_every_bad_field():
    with pytest.raises(ConfigError) as err:
        config.load(None, nodes=0, bogus=1, timeouts={"request_ms": -5},
                    tables={"t": {"r": 9, "codec": "json"}})
    for field in ("nodes", "bogus", "timeouts.request_ms", "tables.t.r", "tables.t.codec"):
        assert field in str(err.value), (field, str(err.value))


def test_the_builtin_cache_table_is_a_pickled_lru_cache():
    cache = config.load(None).tables["cache"]
    assert (cache.n, cache.r, cache.w, cache.conflict, cache.codec) == (2, 1, 1, "lww", "pickle")
    assert cache.eviction == "lru" and cache.max_memory_mb > 0


def test_missing_or_malformed_file_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(str(tmp_path / "none.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(str(bad))

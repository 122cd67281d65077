"""The `dynamo-ray` command: run the demo, start and stop a store on a Ray cluster, inspect it,
and read and write keys (values as JSON).

Every command that talks to a running cluster takes ``--address`` (default ``auto``) and
``--name`` (the store's name, default ``dynamo``). Errors print one line and exit with 1.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

import click

from .errors import DynamoError


def _connect(address: str, name: str):
    from .client import connect

    return connect(name, address=address)


def _shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _fail(e: Exception) -> None:
    click.echo(f"error: {e}", err=True)
    sys.exit(1)


address_option = click.option("--address", default="auto", show_default=True,
                              help="Ray cluster address")
name_option = click.option("--name", default="dynamo", show_default=True, help="store name")
table_option = click.option("--table", default="default", show_default=True)


@click.group()
def main() -> None:
    """dynamo_ray: Amazon's Dynamo as actors on Ray."""


@main.command()
def demo() -> None:
    """Start a local store, tell the shopping-cart story, stop everything."""
    import dynamo_ray as dr
    from .demo import cart_story, partition_story

    store = None
    try:
        click.echo("Starting a local store (4 nodes, 16 partitions, N=3 R=2 W=2) ...")
        store = dr.start(name="dynamo-demo")
        click.echo(f"Nodes: {', '.join(store.nodes())}\n")
        cart_story(store, say=click.echo)
        click.echo("")
        partition_story(store, say=click.echo)
    except (DynamoError, AssertionError) as e:
        _fail(e)
    finally:
        if store is not None:
            store.stop()
        _shutdown()
    click.echo("\nStore stopped.")


@main.command()
@click.option("--config", "config_path", default=None, help="YAML config (default: built-in)")
@address_option
@click.option("--name", default=None, help="store name (default: the config's)")
def up(config_path: Optional[str], address: str, name: Optional[str]) -> None:
    """Start a store on a running Ray cluster (detached); a no-op if it is already running."""
    import ray

    from . import config as config_mod
    from . import placement
    from .client import start

    try:
        cfg = config_mod.load(config_path, **({"name": name} if name else {}))
        ray.init(address=address, logging_level="warning", log_to_driver=False)
        if placement.store_node_names(cfg.name):
            click.echo(f"store {cfg.name!r} is already running")
            return
        store = start(cfg, name=cfg.name)
        click.echo(f"store {cfg.name!r} is up: {len(store.nodes())} nodes, "
                   f"{store.ring.partitions} partitions, placement {cfg.placement}")
    except (DynamoError, ConnectionError) as e:
        _fail(e)
    finally:
        _shutdown()


@main.command()
@address_option
@name_option
def down(address: str, name: str) -> None:
    """Stop the store and remove every actor of it."""
    try:
        store = _connect(address, name)
        store.stop()
        click.echo(f"store {name!r} is down")
    except DynamoError as e:
        _fail(e)
    finally:
        _shutdown()


STATUS_COLUMNS = ["node", "partition", "up", "keys", "bytes", "hints_pending", "segments",
                  "ae_keys", "ae_last"]


@main.command()
@click.option("--all", "all_columns", is_flag=True, help="every column of Store.status()")
@click.option("--view", default=None, help="take 'up' from this node's gossip view")
@address_option
@name_option
def status(all_columns: bool, view: Optional[str], address: str, name: str) -> None:
    """A line per node, then one row per vnode: keys, bytes, hints pending, anti-entropy."""
    try:
        frame = _connect(address, name).status(view=view)
        nodes = frame.groupby("node").agg(up=("up", "all"), vnodes=("partition", "count"),
                                          keys=("keys", "sum"), bytes=("bytes", "sum"),
                                          hints_pending=("hints_pending", "sum"))
        click.echo(nodes.to_string())
        click.echo("")
        shown = frame if all_columns else frame[STATUS_COLUMNS]
        click.echo(shown.to_string(index=False))
    except DynamoError as e:
        _fail(e)
    finally:
        _shutdown()


@main.command()
@click.option("--plot", "plot_path", default=None, help="also draw the ring to this PNG")
@click.option("--key", default=None, help="with --plot: mark this key and its preference list")
@click.option("--n", "replicas", default=None, type=int, help="N (default: the largest table's)")
@address_option
@name_option
def ring(plot_path: Optional[str], key: Optional[str], replicas: Optional[int], address: str,
         name: str) -> None:
    """Print the ownership table: partition, owner, hash range, preference list, fallbacks."""
    from .ringview import draw_ring, format_table

    try:
        store = _connect(address, name)
        current = store.refresh_ring()
        n = replicas or max(t.n for t in store.config.tables.values())
        click.echo(format_table(current, n))
        if plot_path:
            draw_ring(current, n, plot_path, highlight_key=key)
            click.echo(f"\nring drawn to {plot_path}")
    except DynamoError as e:
        _fail(e)
    finally:
        _shutdown()


@main.command("add-node")
@click.argument("node")
@click.option("--ray-node", default=None, help="Ray node id to pin it to (placement spread)")
@address_option
@name_option
def add_node(node: str, ray_node: Optional[str], address: str, name: str) -> None:
    """Add NODE to the store: it claims about 1/(S+1) of the partitions, streamed to it first."""
    try:
        report = _connect(address, name).add_node(node, ray_node=ray_node)
        click.echo(f"{node} joined: {report['partitions_moved']} partitions, "
                   f"{report['keys_moved']:,} keys moved in {report['seconds']:.1f}s")
    except DynamoError as e:
        _fail(e)
    finally:
        _shutdown()


@main.command("remove-node")
@click.argument("node")
@address_option
@name_option
def remove_node(node: str, address: str, name: str) -> None:
    """Remove NODE gracefully: its partitions are streamed to the others, then it stops."""
    try:
        report = _connect(address, name).remove_node(node)
        click.echo(f"{node} left: {report['partitions_moved']} partitions, "
                   f"{report['keys_moved']:,} keys moved in {report['seconds']:.1f}s")
    except DynamoError as e:
        _fail(e)
    finally:
        _shutdown()


@main.command()
@click.option("--quick", is_flag=True, help="a short run (about 2 minutes on 2 cores)")
@click.option("--smoke", is_flag=True, help="a few operations only: checks the bench runs")
@click.option("--out", "out_dir", default="bench-out", show_default=True,
              help="directory for results.json and the plots")
@click.option("--memory", is_flag=True, help="also load 200,000 keys and report bytes per key")
@click.option("--scale", is_flag=True, help="also run 1, 2, 4, 8 nodes with as many clients")
def bench(quick: bool, smoke: bool, out_dir: str, memory: bool, scale: bool) -> None:
    """Benchmark dynamo beside a dict in one Ray actor and Redis; print the goals met."""
    from . import bench as bench_mod

    try:
        bench_mod.run("smoke" if smoke else "quick" if quick else "full", out_dir, memory, scale,
                      say=click.echo)
    except DynamoError as e:
        _fail(e)


def _result_json(key: Any, got) -> str:
    return json.dumps({"key": key, "values": got.values, "siblings": len(got.values)})


@main.command()
@click.argument("key")
@table_option
@address_option
@name_option
def get(key: str, table: str, address: str, name: str) -> None:
    """Print the key's values as JSON."""
    try:
        click.echo(_result_json(key, _connect(address, name).table(table).get(key)))
    except DynamoError as e:
        _fail(e)
    finally:
        _shutdown()


@main.command()
@click.argument("key")
@click.argument("value")
@table_option
@click.option("--blind", is_flag=True, help="write without reading first: adds a sibling")
@address_option
@name_option
def put(key: str, value: str, table: str, blind: bool, address: str, name: str) -> None:
    """Set KEY to VALUE (JSON), replacing what a read sees (or beside it, with --blind)."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        _fail(ValueError(f"VALUE must be JSON: {e}"))
    try:
        t = _connect(address, name).table(table)
        context = None if blind else t.get(key).context
        t.put(key, parsed, context=context)
        click.echo(_result_json(key, t.get(key)))
    except DynamoError as e:
        _fail(e)
    finally:
        _shutdown()


@main.command()
@click.argument("key")
@table_option
@address_option
@name_option
def delete(key: str, table: str, address: str, name: str) -> None:
    """Delete KEY (what a read sees of it)."""
    try:
        t = _connect(address, name).table(table)
        t.delete(key, context=t.get(key).context)
        click.echo(json.dumps({"key": key, "deleted": True}))
    except DynamoError as e:
        _fail(e)
    finally:
        _shutdown()


if __name__ == "__main__":
    main()

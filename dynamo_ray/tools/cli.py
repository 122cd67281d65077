"""The `dynamo-ray` command: run the demo, start and stop a store on a Ray cluster, inspect it,
and read and write keys (values as JSON, or raw text and bytes with ``put --raw``).

Every command that talks to a running cluster takes ``--address`` (default ``auto``) and
``--name`` (the store's name, default ``dynamo``); ``up`` and ``down`` also take ``--config``,
whose ``name`` they use unless ``--name`` is given. ``up`` and ``down`` are idempotent: ``up`` of
a running store with the same config and ``down`` of a store that is not running exit 0.

Must not: show a traceback for anything the store or Ray raises. A `DynamoError` or a Ray
exception prints ``error: ...`` on one line and exits 1; a misused option exits 2 (click).
Must not: let Ray's worker-startup notice through (see `localray.quiet_worker_startup_notices`).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import Any, Iterator, Optional

import click

from .. import __version__
from ..errors import ClusterNotFound, DynamoError

DEFAULT_NAME = "dynamo"
CLEAR_SCREEN = "\x1b[H\x1b[2J"  # cursor home, erase the screen
NOT_JSON_HINT = "hint: quote a string as JSON ('\"book\"') or pass --raw"


class CliError(Exception):
    """A problem the command reports as ``error: ...`` and exit 1 (not a usage error)."""


# --- Ray session and errors ----------------------------------------------------------------------
def _init_ray(address: str) -> None:
    """Join the Ray cluster at ``address`` as a quiet driver (no worker logs, no worker-startup
    notice); a cluster that is not there is `ClusterNotFound`."""
    import ray

    from ..runtime.localray import quiet_worker_startup_notices

    quiet_worker_startup_notices()
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, logging_level="warning", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ClusterNotFound(f"no Ray cluster to connect to at {address!r}: {e}") from None


def _connect(address: str, name: str):
    from ..client.store import connect

    _init_ray(address)
    return connect(name, address=address)


def _shutdown() -> None:
    if "ray" not in sys.modules:
        return
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _fail(e: Any) -> None:
    click.echo(f"error: {e}", err=True)
    sys.exit(1)


def _is_ray_error(e: BaseException) -> bool:
    return type(e).__module__.split(".")[0] == "ray" or isinstance(e, ConnectionError)


@contextlib.contextmanager
def _session() -> Iterator[None]:
    """Run a command's body: its errors print one line and exit 1; Ray is shut down after."""
    try:
        yield
    except (DynamoError, CliError) as e:
        _fail(e)
    except Exception as e:
        if not _is_ray_error(e):
            raise
        _fail(f"Ray: {type(e).__name__}: {e}")
    finally:
        _shutdown()


address_option = click.option("--address", default="auto", show_default=True,
                              help="Ray cluster address (GCS host:port, or auto)")
name_option = click.option("--name", default=DEFAULT_NAME, show_default=True, help="store name")
table_option = click.option("--table", default="default", show_default=True,
                            help="table of the store to read or write")
config_option = click.option("--config", "config_path", default=None,
                             help="YAML config (default: built-in)")
config_name_option = click.option("--name", default=None,
                                  help="store name (default: the config's; wins over it)")


@click.group()
@click.version_option(__version__, "--version", prog_name="dynamo-ray",
                      message="%(prog)s %(version)s", help="print the version and exit")
def main() -> None:
    """dynamo_ray: Amazon's Dynamo as actors on Ray."""


@main.command()
def demo() -> None:
    """Start a local store, tell the shopping-cart story, stop everything."""
    import dynamo_ray as dr

    from .demo import cart_story, partition_story

    store = None
    with _session():
        try:
            click.echo("Starting a local store (4 nodes, 8 partitions, N=3 R=2 W=2) ...")
            store = dr.start(name="dynamo-demo")
            click.echo(f"Nodes: {', '.join(store.nodes())}\n")
            cart_story(store, say=click.echo)
            click.echo("")
            partition_story(store, say=click.echo)
        except AssertionError as e:
            raise CliError(e) from None
        finally:
            if store is not None:
                store.stop()
    click.echo("\nStore stopped.")


# --- up and down ---------------------------------------------------------------------------------
def _store_config(config_path: Optional[str], name: Optional[str]):
    from .. import config as config_mod

    return config_mod.load(config_path, **({"name": name} if name else {}))


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"tables": {"carts": {"w": 2}}} -> {"tables.carts.w": 2}; lists and scalars are leaves."""
    if not isinstance(tree, dict) or (prefix and not tree):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


ABSENT = "(absent)"


def config_drift(running: dict, given: dict) -> list[tuple[str, Any, Any]]:
    """The dotted keys whose values differ: [(key, running value, given value)], sorted."""
    old, new = _flatten(running), _flatten(given)
    return [(key, old.get(key, ABSENT), new.get(key, ABSENT))
            for key in sorted(set(old) | set(new)) if old.get(key, ABSENT) != new.get(key, ABSENT)]


def _drift_lines(drift: list[tuple[str, Any, Any]]) -> list[str]:
    return [f"  {key}: running {old!r}, config {new!r}" for key, old, new in drift]


@main.command()
@config_option
@address_option
@config_name_option
@click.option("--if-exists", "if_exists", type=click.Choice(["error", "ok"]), default="error",
              show_default=True,
              help="a store of that name already runs with a different config: fail (error) or "
                   "keep it and exit 0 (ok)")
def up(config_path: Optional[str], address: str, name: Optional[str], if_exists: str) -> None:
    """Start a store on a running Ray cluster (detached). A no-op if it is already running with
    this config; if it runs with another, print the differing keys and exit 1 (or, with
    --if-exists ok, 0)."""
    from ..runtime import placement
    from ..client.store import connect, start

    with _session():
        cfg = _store_config(config_path, name)
        _init_ray(address)
        if placement.store_node_names(cfg.name):
            drift = config_drift(connect(cfg.name, address=address).config.to_dict(),
                                 cfg.to_dict())
            if not drift:
                click.echo(f"store {cfg.name!r} is already running")
                return
            lines = _drift_lines(drift)
            differ = f"{len(drift)} key{' differs' if len(drift) == 1 else 's differ'}"
            if if_exists == "error":
                head = (f"store {cfg.name!r} is already running with a different config "
                        f"({differ}; --if-exists ok keeps it):")
                raise CliError("\n".join([head, *lines]))
            click.echo(f"store {cfg.name!r} is already running")
            head = f"note: it runs with a different config ({differ}), kept as is:"
            click.echo("\n".join([head, *lines]), err=True)
            return
        store = start(cfg, name=cfg.name)
        click.echo(f"store {cfg.name!r} is up: {len(store.nodes())} nodes, "
                   f"{store.ring.partitions} partitions, placement {cfg.placement}")


DOWN_TIMEOUT_S = 30.0


@main.command()
@config_option
@address_option
@config_name_option
def down(config_path: Optional[str], address: str, name: Optional[str]) -> None:
    """Stop the store (the config's, or --name) and remove every actor of it. A store that is
    not running is reported and exits 0."""
    from ..runtime import placement
    from ..client.store import _kill_store_actors, connect

    with _session():
        name = name or _store_config(config_path, None).name
        _init_ray(address)
        if not placement.store_actor_names(name):
            click.echo(f"store {name!r} is not running")
            return
        try:
            connect(name, address=address).stop()
        except ClusterNotFound:  # no node actor answers: remove whatever is left by name
            pass
        deadline = time.monotonic() + DOWN_TIMEOUT_S
        while (left := placement.store_actor_names(name)) and time.monotonic() < deadline:
            _kill_store_actors(name)
            time.sleep(0.2)
        if left:
            raise CliError(f"store {name!r}: {len(left)} actors still listed after "
                           f"{DOWN_TIMEOUT_S:.0f} s: {', '.join(sorted(left)[:5])}")
        click.echo(f"store {name!r} is down")


# --- status --------------------------------------------------------------------------------------
STATUS_COLUMNS = ["node", "partition", "up", "keys", "bytes", "hints_pending", "segments",
                  "ae_keys", "ae_last"]


def _coordinator_p99_ms(store, nodes: list[str]) -> dict[str, Optional[float]]:
    """Each node's coordinator's p99 latency over its recent requests (None if it does not
    answer within one call deadline, shared by all nodes)."""
    import ray

    from ..runtime import placement
    from ..client.routing import rpc_timeout_s

    refs = {}
    for node in nodes:
        handle = placement.lookup(placement.coordinator_actor_name(store.name, node))
        if handle is not None:
            refs[node] = handle.latency_p99_ms.remote()
    deadline = time.monotonic() + rpc_timeout_s(store.config)
    p99: dict[str, Optional[float]] = {}
    for node, ref in refs.items():
        try:
            p99[node] = round(float(ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))), 1)
        except Exception:  # down, or too slow to say: shown as "-"
            p99[node] = None
    return p99


def _node_table(store, frame):
    """One row per node: up, vnodes, keys, bytes, hints pending, repairs (keys moved by its
    anti-entropy exchanges), p99_ms (its coordinator's)."""
    nodes = frame.groupby("node").agg(up=("up", "all"), vnodes=("partition", "count"),
                                      keys=("keys", "sum"), bytes=("bytes", "sum"),
                                      hints_pending=("hints_pending", "sum"),
                                      repairs=("ae_keys", "sum"))
    p99 = _coordinator_p99_ms(store, list(nodes.index))
    nodes["p99_ms"] = [p99.get(node) for node in nodes.index]
    return nodes


@main.command()
@click.option("--all", "all_columns", is_flag=True, help="every column of Store.status()")
@click.option("--view", default=None, help="take 'up' from this node's gossip view")
@click.option("--watch", is_flag=True, help="redraw the per-node table until Ctrl-C")
@click.option("--interval", "interval_s", type=click.FloatRange(min=0.05), default=1.0,
              show_default=True, help="with --watch: seconds between redraws")
@click.option("--count", "frames", type=click.IntRange(min=1), default=None,
              help="with --watch: stop after this many redraws (default: until Ctrl-C)")
@address_option
@name_option
def status(all_columns: bool, view: Optional[str], watch: bool, interval_s: float,
           frames: Optional[int], address: str, name: str) -> None:
    """A line per node (up, vnodes, keys, bytes, hints pending, repairs, p99_ms), then one row
    per vnode; with --watch, the per-node lines every --interval seconds."""
    with _session():
        store = _connect(address, name)
        if not watch:
            frame = store.status(view=view)
            click.echo(_node_table(store, frame).to_string(na_rep="-"))
            click.echo("")
            shown = frame if all_columns else frame[STATUS_COLUMNS]
            click.echo(shown.to_string(index=False))
            return
        clear = sys.stdout.isatty()
        drawn = 0
        try:
            while True:
                table = _node_table(store, store.status(view=view)).to_string(na_rep="-")
                click.echo(CLEAR_SCREEN if clear else ("\n" if drawn else ""), nl=False)
                click.echo(f"store {name!r} at {time.strftime('%H:%M:%S')}, every "
                           f"{interval_s:g} s (Ctrl-C to stop)\n{table}")
                drawn += 1
                if frames is not None and drawn >= frames:
                    break
                time.sleep(interval_s)
        except KeyboardInterrupt:
            pass


# --- ring and membership -------------------------------------------------------------------------
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

    with _session():
        store = _connect(address, name)
        current = store.refresh_ring()
        n = replicas or max(t.n for t in store.config.tables.values())
        click.echo(format_table(current, n))
        if plot_path:
            draw_ring(current, n, plot_path, highlight_key=key)
            click.echo(f"\nring drawn to {plot_path}")


@main.command("add-node")
@click.argument("node")
@click.option("--ray-node", default=None, help="Ray node id to pin it to (placement spread)")
@address_option
@name_option
def add_node(node: str, ray_node: Optional[str], address: str, name: str) -> None:
    """Add NODE to the store: it claims about 1/(S+1) of the partitions, streamed to it first."""
    with _session():
        report = _connect(address, name).add_node(node, ray_node=ray_node)
        click.echo(f"{node} joined: {report['partitions_moved']} partitions, "
                   f"{report['keys_moved']:,} keys moved in {report['seconds']:.1f}s")


@main.command("remove-node")
@click.argument("node")
@address_option
@name_option
def remove_node(node: str, address: str, name: str) -> None:
    """Remove NODE gracefully: its partitions are streamed to the others, then it stops."""
    with _session():
        report = _connect(address, name).remove_node(node)
        click.echo(f"{node} left: {report['partitions_moved']} partitions, "
                   f"{report['keys_moved']:,} keys moved in {report['seconds']:.1f}s")


@main.command()
@click.option("--quick", is_flag=True, help="a short run (about 2 minutes on 2 cores)")
@click.option("--smoke", is_flag=True, help="a few operations only: checks the bench runs")
@click.option("--out", "out_dir", default="bench-out", show_default=True,
              help="directory for results.json and the plots")
@click.option("--memory", is_flag=True, help="also load 200,000 keys and report bytes per key")
@click.option("--scale", is_flag=True, help="also run 1, 2, 4, 8 nodes with as many clients")
@click.option("--footprint", is_flag=True,
              help="measure dr.start()'s start time, memory and idle CPU over a bare Ray: alone, "
                   "or after the matrix with --quick or --smoke")
def bench(quick: bool, smoke: bool, out_dir: str, memory: bool, scale: bool,
          footprint: bool) -> None:
    """Benchmark dynamo beside a replicated dict on Ray actors, a dict in one Ray actor and
    Redis; print the goals met."""
    from . import bench as bench_mod

    with _session():
        bench_mod.run("smoke" if smoke else "quick" if quick else "full", out_dir, memory, scale,
                      say=click.echo, footprint=footprint,
                      matrix=quick or smoke or not footprint)


# --- keys ----------------------------------------------------------------------------------------
def _as_json(value: Any) -> Any:
    """json.dumps's ``default``: bytes as text (undecodable bytes replaced), anything else (numpy
    arrays, sets, objects of a pickle-codec table) as its repr."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return repr(value)


def _json_keys(value: Any) -> Any:
    """Dict keys json cannot take (bytes, tuples, ...) made into text the way `_as_json` does,
    through nested dicts and lists."""
    if isinstance(value, dict):
        return {(k if isinstance(k, (str, int, float, bool)) or k is None else _as_json(k)):
                _json_keys(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_keys(v) for v in value]
    return value


def _result_json(key: Any, got) -> str:
    values = _json_keys(list(got.values))
    return json.dumps({"key": key, "values": values, "siblings": len(got.values)},
                      default=_as_json)


@main.command()
@click.option("--seeds", "seed_count", default=200, show_default=True,
              help="how many seeds to run, from --start")
@click.option("--start", default=0, show_default=True, help="the first seed")
@click.option("--seed", "one_seed", default=None, type=int,
              help="replay this one seed and print its whole trace")
@click.option("--faults", default=None,
              help="comma-separated faults to draw from (default: all): crash, restart-all, "
                   "partition, isolate, slow, skew, loss, join, leave")
@click.option("--break", "switch", default=None,
              type=click.Choice(["stop-at-w", "log-at-coordinator-only",
                                 "reuse-ids-after-restart", "prune-without-age-floor"]),
              help="a negative control: break one rule of the protocol on purpose")
@click.option("--conflict", default="siblings", show_default=True,
              type=click.Choice(["siblings", "lww"]),
              help="conflict policy of the carts table (lww is the set checker's control)")
@click.option("--duration-s", default=10.0, show_default=True,
              help="simulated seconds of workload and faults a seed")
@click.option("--workers", default=None, type=int,
              help="processes to run seeds on (default: one per core)")
@click.option("--expect-failure", is_flag=True,
              help="for a negative control: exit 0 only if some seed fails")
def simulate(seed_count: int, start: int, one_seed: Optional[int], faults: Optional[str],
             switch: Optional[str], conflict: str, duration_s: float, workers: Optional[int],
             expect_failure: bool) -> None:
    """Run the store's real protocol code on a simulated network, clock and disk, one seed
    at a time (the same seed gives the same history), and check every history."""
    import os

    if os.environ.get("PYTHONHASHSEED") != "0":  # str hashing must not differ between runs
        os.execve(sys.executable, [sys.executable, *sys.argv],
                  {**os.environ, "PYTHONHASHSEED": "0"})
    from ..client.progress import bar
    from ..sim import run as sim

    chosen = tuple(f.strip() for f in faults.split(",") if f.strip()) if faults else sim.FAULTS
    unknown = [f for f in chosen if f not in sim.FAULTS]
    if unknown:
        raise click.BadParameter(f"unknown faults {unknown}; choose from {', '.join(sim.FAULTS)}",
                                 param_hint="--faults")
    switches = sim.SWITCHES[switch] if switch else sim.NONE
    if one_seed is not None:
        result = sim.run_seed(one_seed, chosen, switches, conflict, duration_s)
        click.echo(f"seed {one_seed}: {result.ops} operations, faults {result.faults}, "
                   f"{result.messages} messages, {result.simulated_s:.1f} simulated s, "
                   f"digest {result.digest}")
        for line in result.trace:
            click.echo(f"  {line}")
        for violation in result.violations:
            click.echo(f"  VIOLATION {violation}")
        sys.exit(0 if result.ok != expect_failure else 1)
    seeds = range(start, start + seed_count)
    workers = workers or min(os.cpu_count() or 1, 4)
    started = time.perf_counter()
    progress_bar = bar(seed_count, "simulating", "seed")
    failed, ops, fault_count, simulated_s = [], 0, 0, 0.0
    for result in sim.run_many(seeds, chosen, switches, conflict, duration_s, workers):
        ops += result.ops
        fault_count += len(result.faults)
        simulated_s += result.simulated_s
        if not result.ok:
            failed.append(result)
        if progress_bar is not None:
            progress_bar.update(1)
    if progress_bar is not None:
        progress_bar.close()
    wall_s = time.perf_counter() - started
    per_minute = ops / wall_s * 60
    click.echo(f"{seed_count} seeds in {wall_s:.1f} s on {workers} processes: "
               f"{seed_count / wall_s:.1f} seeds/s, {ops:,} operations and {fault_count:,} faults "
               f"in {simulated_s / 3600:.1f} simulated hours")
    click.echo(f"{per_minute:,.0f} operations per wall-clock minute = "
               f"{per_minute / sim.CHAOS_OPS_PER_MINUTE:.0f} x the chaos job's "
               f"{sim.CHAOS_OPS_PER_MINUTE:,.0f} (goal: 100 x)")
    click.echo(f"{seed_count - len(failed)} passed, {len(failed)} failed")
    for result in failed:
        click.echo(f"\nseed {result.seed} FAILED: replay with "
                   f"{sim.replay_command(result.seed, chosen, switch, conflict)}")
        for violation in result.violations[:3]:
            click.echo(f"  {violation}")
        for line in result.trace[-8:]:
            click.echo(f"  {line}")
    sys.exit(0 if bool(failed) == expect_failure else 1)


@main.command()
@click.argument("key")
@table_option
@address_option
@name_option
def get(key: str, table: str, address: str, name: str) -> None:
    """Print KEY's values as JSON: {"key", "values" (the siblings), "siblings"}."""
    with _session():
        click.echo(_result_json(key, _connect(address, name).table(table).get(key)))


def _parse_json(data: Any, where: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:  # JSONDecodeError, or bytes that are not UTF-8
        raise CliError(f"VALUE must be JSON{where}: {e}; {NOT_JSON_HINT}") from None


def _value_to_put(value: Optional[str], file_path: Optional[str], raw: bool) -> Any:
    """The value from exactly one source: VALUE, stdin (VALUE is -) or --file."""
    if (value is None) == (file_path is None):
        raise click.UsageError("give the value once: VALUE, - (read stdin) or --file PATH")
    if file_path is not None:
        with open(file_path, "rb") as f:
            data = f.read()
        return data if raw else _parse_json(data, f" (in {file_path})")
    if value == "-":
        data = click.get_binary_stream("stdin").read()
        if not raw:
            return _parse_json(data, " (on stdin)")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data
    return value if raw else _parse_json(value, "")


@main.command()
@click.argument("key")
@click.argument("value", required=False)
@click.option("--file", "file_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="read the value from this file instead of VALUE")
@click.option("--raw", is_flag=True,
              help="store the text as a string instead of parsing JSON (with --file: the "
                   "file's bytes; from stdin: its text, or bytes if it is not UTF-8)")
@table_option
@click.option("--blind", is_flag=True, help="write without reading first: adds a sibling")
@address_option
@name_option
def put(key: str, value: Optional[str], file_path: Optional[str], raw: bool, table: str,
        blind: bool, address: str, name: str) -> None:
    """Set KEY to VALUE (JSON; - reads stdin; or --file PATH), replacing what a read sees (or
    beside it, with --blind). Prints the key's values after the write."""
    with _session():
        parsed = _value_to_put(value, file_path, raw)
        t = _connect(address, name).table(table)
        context = None if blind else t.get(key).context
        t.put(key, parsed, context=context)
        click.echo(_result_json(key, t.get(key)))


@main.command()
@click.argument("key")
@table_option
@address_option
@name_option
def delete(key: str, table: str, address: str, name: str) -> None:
    """Delete KEY (what a read sees of it)."""
    with _session():
        t = _connect(address, name).table(table)
        t.delete(key, context=t.get(key).context)
        click.echo(json.dumps({"key": key, "deleted": True}))


if __name__ == "__main__":
    main()

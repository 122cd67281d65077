"""Overload: offered load at twice saturation is shed with `Overloaded`, and what is accepted
keeps its latency, with vnode memory flat.

    python jobs/overload.py [--seconds 10] [--service-ms 10] [--max-pending 1] [--max-inflight 6]
    ray job submit --working-dir . -- python jobs/overload.py

On a 2-core machine the load generator and the store share the CPU, so offering twice the
store's CPU-bound capacity starves the generator first. Here every vnode call is given a service
time (``--service-ms``, `Store.slow_node`), as an I/O-bound store has, so that the store and not
the generator saturates. The bounded queues: ``overload.max_inflight_requests`` requests in
flight from the client process (refused there, at no cost to the store) and at each coordinator,
``overload.max_queue_ms`` at a coordinator's door, ``overload.max_pending_calls`` calls per vnode
from each router. Shedding at the store's door is not enough here: refusing a request costs a
coordinator nearly as much CPU as serving a get, so at twice saturation the refusals alone keep
the CPU saturated and accepted requests wait for it.

1. unloaded: sequential single-key gets, p50 and p99;
2. saturation: the most gets a second that 4, 8 or 16 closed-loop clients get through;
3. overload: an open-loop schedule at twice that rate (each get issued on time, whatever the
   ones before it are doing), for --seconds; every request is an individual coordinator call.
Prints: requests offered, accepted, shed (`Overloaded`), failed otherwise; the p99 of accepted
requests beside 3x the unloaded p99 (the goal); vnode private memory before and after.
Exits 1 when a goal is missed.
"""

import argparse
import asyncio
import random
import sys
import time

import dynamo_ray as dr


def p(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def retrying(call, *args):
    """What a client does when told the store is overloaded: back off and try again."""
    for attempt in range(50):
        try:
            return call(*args)
        except dr.Overloaded:
            time.sleep(0.01 * (attempt + 1))
    return call(*args)


def unloaded(table, keys, n=500):
    lat = []
    for _ in range(n):
        k = random.choice(keys)
        t0 = time.perf_counter()
        retrying(table.get, k)
        lat.append((time.perf_counter() - t0) * 1000)
    return p(lat, 0.5), p(lat, 0.99)


def saturation(table, keys, clients, seconds=4.0):
    """Closed loop: ``clients`` coroutines each issue the next get when the last returns; the
    gets a second that succeed."""
    route, done, shed = table._route, [0], [0]

    async def client(stop):
        while time.monotonic() < stop:
            try:
                await route.acall("get_many", (table.name, [random.choice(keys)], None, None))
                done[0] += 1
            except dr.Overloaded:
                shed[0] += 1

    async def main():
        stop = time.monotonic() + seconds
        await asyncio.gather(*(client(stop) for _ in range(clients)))

    asyncio.run(main())
    return done[0] / seconds


def open_loop(table, keys, rate, seconds):
    """Issue gets at ``rate`` a second on schedule; latency counts from the scheduled time."""
    accepted, shed, failed = [], [0], [0]
    route = table._route

    async def one(due):
        try:
            await route.acall("get_many", (table.name, [random.choice(keys)], None, None))
            accepted.append((time.perf_counter() - due) * 1000)
        except dr.Overloaded:
            shed[0] += 1
        except dr.DynamoError:
            failed[0] += 1

    async def main():
        start = time.perf_counter()
        tasks, n = [], int(rate * seconds)
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(due)))
        await asyncio.gather(*tasks)
        return n

    offered = asyncio.run(main())
    return offered, accepted, shed[0], failed[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--service-ms", type=float, default=10.0)
    parser.add_argument("--max-pending", type=int, default=1)
    parser.add_argument("--max-inflight", type=int, default=6,
                        help="overload.max_inflight_requests: per coordinator and per client process")
    parser.add_argument("--queue-factor", type=float, default=1.0,
                        help="max_queue_ms as a multiple of the service time")
    args = parser.parse_args()
    store = dr.start(name="overload", nodes=4, partitions=16,
                     tables={"default": {"n": 3, "r": 2, "w": 2}},
                     overload={"max_queue_ms": args.queue_factor * args.service_ms,
                               "max_pending_calls": args.max_pending,
                               "max_inflight_requests": args.max_inflight},
                     antientropy={"interval_s": 3600.0}, handoff={"interval_s": 3600.0})
    try:
        table = store.table()
        keys = [f"k{i}" for i in range(10_000)]
        for s in range(0, len(keys), 2000):
            retrying(table.put_many, {k: "v" * 100 for k in keys[s:s + 2000]})
        for node in store.nodes():
            store.slow_node(node, args.service_ms)
        p50, p99 = unloaded(table, keys)
        rate = max(saturation(table, keys, clients) for clients in (4, 8, 16))
        memory_before = store.status()["uss_bytes"]
        offered, accepted, shed, failed = open_loop(table, keys, 2 * rate, args.seconds)
        memory_after = store.status()["uss_bytes"]
    finally:
        store.stop()
    accepted_p99 = p(accepted, 0.99)
    growth_mb = (memory_after - memory_before).max() / 2**20
    print(f"\nOverload: 4 nodes, Q=16, N=3 R=2 W=2, single-key gets; vnode service time "
          f"{args.service_ms:g} ms, max_inflight_requests={args.max_inflight}, "
          f"max_pending_calls={args.max_pending}, max_queue_ms="
          f"{args.queue_factor * args.service_ms:g}")
    print(f"  unloaded                p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(f"  saturation              {rate:.0f} gets/s (the best of 4, 8, 16 closed-loop clients)")
    print(f"  offered at 2x           {offered:,} gets over {args.seconds:g} s "
          f"({2 * rate:.0f}/s, open loop)")
    print(f"  accepted                {len(accepted):,} ({len(accepted) / args.seconds:.0f}/s), "
          f"p50 {p(accepted, 0.5):.2f} ms, p99 {accepted_p99:.2f} ms")
    print(f"  shed (Overloaded)       {shed:,}")
    print(f"  failed otherwise        {failed:,}")
    print(f"  p99 accepted / p99 unloaded   {accepted_p99 / p99:.2f}  (goal <= 3)")
    print(f"  vnode private memory growth, worst vnode: {growth_mb:+.1f} MB (goal: flat)")
    ok = shed > 0 and accepted_p99 <= 3 * p99 and growth_mb < 16
    print("goals: " + ("all met" if ok else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""A deterministic simulator of the store (FoundationDB's simulation, TigerBeetle's VOPR).

The real protocol code (routers, vnodes, nodes, hinted handoff, anti-entropy, gossip,
membership changes) runs in one process on a simulated network, clock and disk, driven by a
seed: the same seed gives the same history, byte for byte. `run.run_seed` runs one seed's
workload and faults and checks the history; `dynamo-ray simulate` runs many.

    loop      an asyncio event loop on virtual time (nothing sleeps for real)
    network   message delays, loss, reordering, partitions, crashed and slow nodes
    disk      files that keep only what was fsynced when their node crashes
    cluster   the store's nodes on that network; crash, restart, join, leave
    workload  clients: set adds (carts), registers, read-modify-write carts, deletes
    nemesis   the faults a seed draws
    checkers  what must hold of every history
    run       one seed end to end; many seeds; the command line

Must not: import Ray.
"""

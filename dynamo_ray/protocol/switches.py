"""Test-only switches that break the protocol on purpose: the simulator's negative controls.

Each turns one rule of the protocol off, so that a checker can show it catches the loss that
rule prevents (a checker that cannot fail proves nothing). They are never read from a config
file and default to off; only `dynamo_ray.sim` and tests set them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Switches:
    stop_at_w: bool = False  # the router forgets a write once W replicas acknowledged it
    log_at_coordinator_only: bool = False  # only the coordinating replica logs a durable write
    reuse_ids_after_restart: bool = False  # a restarted vnode takes back its id and counter
    prune_without_age_floor: bool = False  # prune clock entries however recent, down to 1

    @property
    def any(self) -> bool:
        return any(vars(self).values())


NONE = Switches()

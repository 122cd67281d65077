"""Progress bars for long work: tqdm in a terminal or notebook, Ray's tqdm inside Ray tasks and
actors (whose bars the driver renders), nothing when ``enabled`` is False."""

from __future__ import annotations

from typing import Any, Optional


def bar(total: int, desc: str, unit: str = "it", enabled: bool = True) -> Optional[Any]:
    if not enabled:
        return None
    try:
        import ray

        in_worker = ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE
    except Exception:
        in_worker = False
    if in_worker:
        from ray.experimental.tqdm_ray import tqdm as ray_tqdm

        return ray_tqdm(total=total, desc=desc)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit)

"""Ray: start it embedded or join a cluster, size the tasks, and check the batch's folder is shared.

Embedded (no address), Ray runs on this machine with all its cores. With ``--address auto`` or ``HOST:PORT`` the
driver joins a running cluster (``ray start --head`` on one machine, ``ray start --address HOST:PORT`` on the
others); run folders must then be on storage every node reads and writes at the same path, which ``check_shared``
verifies by having every node read a file the driver wrote.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sds.errors import UserError, first_line

log = logging.getLogger("sds")

OBJECT_STORE_BYTES = 128 * 2**20
"""An embedded Ray's object store: tasks pass configs and result rows only, never tensors."""
PROBE_TIMEOUT_S = 120.0


def import_ray():
    """The ray module, or a one-line UserError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError("sds batch runs on Ray, which is not installed: pip install 'sds[batch]' "
                        "(or pip install 'ray>=2.9')") from None
    return ray


def local_cpus() -> int:
    """Cores this process may use (its CPU affinity where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[object]:
    """ray.init (embedded when address is None), then ray.shutdown; a Ray already initialised is used as it is."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}  # each run logs into its own folder
    try:
        if address is None:
            # "local": always a new instance, never one that `ray start` left on this machine
            ray.init(address="local", num_cpus=local_cpus(), include_dashboard=False,
                     object_store_memory=OBJECT_STORE_BYTES, **quiet)
        else:
            ray.init(address=address, **quiet)
    except ConnectionError as e:
        raise UserError(f"--address {address}: cannot join a Ray cluster there ({str(e).splitlines()[0][:200]}); "
                        "start one with ray start --head, or leave out --address to run on this machine; a cluster "
                        "with token authentication (ray start's default from Ray 2.59) also needs RAY_AUTH_MODE=token "
                        "here") from None
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class Sizing:
    """How many runs go at once and what each asks Ray for."""

    workers: int
    cpus_per_task: int
    gpus_per_task: int
    nodes: int


def size_tasks(ray, workers: int | None, devices: set[str]) -> Sizing:
    """Split the cluster's CPUs between `workers` concurrent runs (default: one per GPU when runs use CUDA, else one
    per node); a run asks for a GPU when its device is cuda, or auto on a cluster that has GPUs."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total = ray.cluster_resources()
    cpus, gpus = int(total.get("CPU", 1)), int(total.get("GPU", 0))
    largest = max((int(n.get("Resources", {}).get("CPU", 0)) for n in nodes), default=cpus) or 1
    use_gpu = "cuda" in devices or ("auto" in devices and gpus > 0)
    if use_gpu and gpus == 0:
        raise UserError("device=cuda, but the Ray cluster has no GPU; use device=auto or device=cpu")
    if workers is None:
        workers = gpus if use_gpu else max(1, len(nodes))
    per_task = max(1, min(largest, cpus // workers))
    if workers * per_task > cpus:
        log.warning("--workers %d on %d CPUs: at most %d runs go at once", workers, cpus, cpus // per_task)
    return Sizing(workers, per_task, 1 if use_gpu else 0, len(nodes))


def check_shared(ray, folder: Path) -> None:
    """On a cluster: every node must read a file the driver wrote in `folder` and write beside it (run folders live
    there, and a retried task resumes from a checkpoint another node wrote). Raises UserError naming the node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from sds.batch.task import probe_storage

    token = uuid.uuid4().hex
    probe = folder / f".probe-{token}"
    probe.write_text(token, encoding="utf-8")
    try:
        remote = ray.remote(probe_storage)
        refs = [remote.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(str(probe), token) for n in ray.nodes() if n.get("Alive")]
        try:
            answers = ray.get(refs, timeout=PROBE_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise UserError(f"not every Ray node checked {folder} within {PROBE_TIMEOUT_S:.0f} s; is the cluster "
                            "busy or a node stuck? (ray status)") from None
        except ray.exceptions.RayTaskError as e:  # most often: this sds is not installed on that node
            cause = getattr(e, "cause", None) or e
            raise UserError(f"a Ray node cannot run sds ({type(cause).__name__}: {first_line(cause)}); install the "
                            "same sds with pip install 'sds[batch]' on every node") from None
        for host, problem in answers:
            if problem:
                raise UserError(f"{folder} is not shared with node {host} ({problem}); put output_dir= on storage "
                                "every node mounts at the same path (NFS, ...)")
    finally:
        probe.unlink(missing_ok=True)

"""Timing a guidance call by its parts, and the process's memory, for benchmarks/model_scale.py."""

from __future__ import annotations

import os
import resource
import sys
import threading
import time

import torch

GIB = 2**30
CAP_EXIT = 3
"""Exit code of a process that RssSampler stopped at its memory cap."""


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that wall-clock time covers it (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PartTimer:
    """Seconds spent in a guidance object's ``encode`` and in its UNet's forward calls, since the last ``take``.

    ``encode`` is wrapped on the instance (``Guidance.__call__`` calls ``self.encode``) and the UNet gets forward
    hooks, so sds's code runs unchanged."""

    def __init__(self, guidance, device: torch.device):
        self.device = device
        self.spent = {"encode": 0.0, "unet": 0.0}
        self._unet_start = 0.0
        encode = guidance.encode

        def timed_encode(images: torch.Tensor) -> torch.Tensor:
            sync(device)
            start = time.perf_counter()
            out = encode(images)
            sync(device)
            self.spent["encode"] += time.perf_counter() - start
            return out

        guidance.encode = timed_encode
        guidance.unet.register_forward_pre_hook(self._start)
        guidance.unet.register_forward_hook(self._stop)

    def _start(self, *_) -> None:
        sync(self.device)
        self._unet_start = time.perf_counter()

    def _stop(self, *_) -> None:
        sync(self.device)
        self.spent["unet"] += time.perf_counter() - self._unet_start

    def take(self) -> dict[str, float]:
        spent, self.spent = self.spent, {"encode": 0.0, "unet": 0.0}
        return spent


def current_rss_gib() -> float:
    """Resident memory of this process now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / GIB
    except OSError:
        return 0.0


def peak_rss_gib() -> float:
    """Peak resident memory of this process over its whole life (loading included)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def available_gib(device: torch.device) -> float:
    """Memory a new process could use: MemAvailable on the CPU, free memory on a CUDA device."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] / GIB
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024 / GIB
    except (OSError, KeyError, ValueError):
        return float("inf")


class RssSampler:
    """Peak resident memory sampled every 10 ms in a thread, from entry (or the last ``reset``) to exit: the steps'
    own peak, which the process-lifetime peak hides when loading needed more.

    cap_gib: on a shared machine, end the process (exit code CAP_EXIT) as soon as it holds more than this, before
    the kernel's out-of-memory killer picks a victim that may be someone else's process."""

    def __init__(self, cap_gib: float | None = None, every_s: float = 0.01):
        self.cap_gib = cap_gib
        self.every_s = every_s
        self.start_gib = self.peak_gib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            now = current_rss_gib()
            self.peak_gib = max(self.peak_gib, now)
            if self.cap_gib is not None and now > self.cap_gib:
                print(f"stopped: resident memory reached {now:.1f} GiB, over the cap of {self.cap_gib:.1f} GiB",
                      file=sys.stderr, flush=True)
                os._exit(CAP_EXIT)

    def reset(self) -> None:
        self.start_gib = self.peak_gib = current_rss_gib()

    def __enter__(self) -> RssSampler:
        self.reset()
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_gib = max(self.peak_gib, current_rss_gib())

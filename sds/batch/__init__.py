"""``sds batch``: many prompts and seeds as Ray tasks, fault-tolerant and resumable, the best seed of each prompt
chosen by the guidance model, and a gallery.

- ``spec``: prompts.txt / batch.yaml -> rows of (prompt, seeds, overrides); one-line errors.
- ``plan``: rows -> one resolved config per (prompt, seed); its folder is fixed by the config (the run's identity).
- ``cluster``: Ray embedded or joined, task sizes (CPUs, GPU, threads), the shared-storage check.
- ``task``: what a worker does for one run: skip, resume from the checkpoint, or start; then score.
- ``score``: the guidance model as an implicit classifier (best-of-N without an extra model).
- ``runner``: the driver loop, retries, Ctrl-C; ``record``: results.csv and batch.json; ``gallery``: gallery.html.

Ray is an optional dependency (``pip install 'sds[batch]'``), imported only when a batch runs.
"""

from __future__ import annotations

from sds.batch.runner import BatchOptions, run_batch

__all__ = ["BatchOptions", "run_batch"]

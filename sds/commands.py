"""What each CLI command does, in plain functions (argument parsing stays in cli.py)."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from sds.config import RunConfig, from_dict, load_config
from sds.errors import RunError

log = logging.getLogger("sds")


def train_prior(args) -> int:
    from dataclasses import replace

    from sds.prior.train import PriorTrainConfig, train_prior as run_training

    cfg = PriorTrainConfig(device=args.device)
    if args.steps is not None:
        cfg = replace(cfg, steps=args.steps)
    if args.minutes is not None:
        cfg = replace(cfg, minutes=args.minutes)
    if args.batch_size is not None:
        cfg = replace(cfg, batch_size=args.batch_size)
    if args.images_per_caption is not None:
        cfg = replace(cfg, data=replace(cfg.data, images_per_caption=args.images_per_caption))
    model_dir = run_training(args.out_dir, cfg)
    log.info("prior exported to %s", model_dir)
    if args.install:
        from sds.prior import builtin_prior_path

        target = builtin_prior_path()
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(model_dir, target)
        log.info("installed as the built-in prior: %s", target)
    return 0

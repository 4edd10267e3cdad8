"""What run.json records about a command on a run: its setup, its times and command line, and a true status
whatever ends it (the commands in ``sds.commands`` call these; ``sds.run.Run`` writes the file)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from sds.run_log import to_run_log

log = logging.getLogger("sds")


def setup(run, guidance, trainer, warnings: list[str], load_seconds: float) -> None:
    """What loading found: the model's family and prediction type, the device and machine, prompt warnings."""
    run.add_timing("load_model", load_seconds)
    run.info.hardware = machine(trainer.field_device)
    run.info.device = str(trainer.field_device)
    run.info.renderer_path = trainer.renderer.path
    run.info.model_kind = guidance.family
    run.info.prediction_type = guidance.prediction_type
    run.info.warnings = warnings


@contextlib.contextmanager
def true_status(run, phase: str) -> Iterator[None]:
    """Whatever ends `phase` (an interrupt, an empty scene, a full disk, a bug), run.json ends saying so:
    interrupted, empty or failed with the one-line reason. The exception still propagates to the CLI."""
    from sds.errors import user_message
    from sds.export import EmptySceneError

    try:
        yield
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            status, message = "interrupted", f"interrupted during {phase}; the checkpoint is kept"
            if phase == "export":
                message += f": export again with sds export {run.path}"
        elif isinstance(e, EmptySceneError):
            status, message = "empty", str(e)
        else:
            status, message = "failed", f"{phase}: {user_message(e) or f'{type(e).__name__}: {e}'}"
        run.info.status, run.info.message = status, message
        # The CLI prints the reason in one line on the console; the run log keeps it too.
        to_run_log(log, logging.ERROR, "run ended with status %s: %s", status, message)
        try:
            run.save()
        except OSError:  # the disk may be the fault; the CLI still prints the reason
            log.error("could not record status %s in %s", status, run.path / "run.json")
        raise


def machine(device) -> dict:
    """run.json's machine: the CPU, and the GPU's name when the run uses CUDA."""
    import torch

    from sds.run import hardware

    return hardware(torch.cuda.get_device_name(device) if device.type == "cuda" else None)


@contextlib.contextmanager
def command_on(run, started_at: str, later: bool) -> Iterator[None]:
    """run.json's record of the command: `ended_at` whatever ends it; a resume or an export (`later`) is also
    listed with its command line, start and end in `later_commands`."""
    from sds.run import command_line, now_iso

    entry = {"command": command_line(), "started_at": started_at, "ended_at": ""}
    if later:
        run.info.later_commands.append(entry)
    try:
        yield
    finally:
        run.info.ended_at = entry["ended_at"] = now_iso()
        try:
            run.save()
        except OSError:  # a full disk: the failure that got here is the one to report
            log.error("could not record the end of the command in %s", run.path / "run.json")

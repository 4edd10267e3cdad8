"""The ``sds`` command. Heavy imports (torch, diffusers) happen inside each command, so ``--help`` and
config errors are instant. Expected failures print one line and exit non-zero, without a traceback."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from pathlib import Path

from sds import __version__
from sds.commands import RESUME_KEYS
from sds.config import ConfigError, load_config, requested_model, requested_recipe, to_yaml
from sds.configs import resolve_config
from sds.configs import shipped_names as shipped_configs
from sds.recipes import choose_recipe

log = logging.getLogger("sds")

CONFIG_HELP = ("a shipped config by name (" + ", ".join(shipped_configs()) + ") or a YAML file: the settings "
               "that differ from the defaults")

OVERRIDE_LIKE = re.compile(r"[A-Za-z_][\w.]*=\S*")
"""What a key=value override looks like; a prompt never does."""

EXAMPLES = """examples:
  sds generate "a red cube"
  sds generate --config quick "a blue torus" seed=1 steps=300
  sds generate "a castle" model=/path/to/stable-diffusion-2-1-base device=cuda
  sds show-config --config quick steps=100
  sds resume outputs/a-red-cube-1a2b3c4d/20261128-101500 steps=800
  sds export outputs/a-red-cube-1a2b3c4d/20261128-101500 --format glb,obj,ply --resolution 192
  sds sample "a red cube" -n 8 --scheduler ddim --steps 30
  sds batch prompts.txt --seeds 4 steps=300
"""


class _Parser(argparse.ArgumentParser):
    """argparse's own errors in one line too (it prints the whole usage otherwise)."""

    def error(self, message: str):
        self.exit(2, f"sds: error: {message} (see: {self.prog} --help)\n")


def _add_overrides(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("overrides", nargs="*", metavar="key=value", help=help or
                   "config overrides, applied last (e.g. steps=300 seed=2 model=PATH guidance.guidance_scale=10)")


def _add_global_flags(p: argparse.ArgumentParser, default: object = False) -> None:
    """Flags taken before or after the subcommand; a subcommand's copy defaults to SUPPRESS so that, when it is not
    given there, the value parsed before the subcommand stands."""
    p.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sds", description="Text-to-3D by Score Distillation Sampling.",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_global_flags(parser)
    parser.add_argument("--version", action="version", version=f"sds {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="prompt -> NeRF -> mesh in a new run folder")
    p.add_argument("prompt", help='what to make, e.g. "a red cube"')
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--recipe", help="a recipe name (sds recipes) or file; default: chosen from the model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (off a terminal there is none: a "
                                                              "line every tenth of the run instead)")
    p.add_argument("--allow-unknown-words", action="store_true",
                   help="run a prompt that names no shape or colour the built-in prior knows (refused otherwise)")
    _add_overrides(p)

    p = sub.add_parser("batch", help="many prompts x seeds as Ray tasks (embedded, or a cluster with --address); "
                                     "best seed per prompt, results.csv, gallery.html")
    p.add_argument("spec", type=Path, help="prompts.txt (one prompt a line) or batch.yaml (rows, shared overrides)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per prompt, from the config's seed on (default 1)")
    p.add_argument("--name", default=None, help="the batch's name: outputs/batch-NAME/ (default: the file's name)")
    p.add_argument("--address", default=None, help="join a Ray cluster: auto or HOST:PORT (default: Ray on this "
                                                   "machine only)")
    p.add_argument("--workers", type=int, default=None, help="runs at once (default: one per GPU, else per node)")
    p.add_argument("--retries", type=int, default=3, help="retries of a run whose worker dies (it resumes)")
    p.add_argument("--config", help="YAML file with the settings that differ from the defaults, for every run")
    p.add_argument("--recipe", help="a recipe name (sds recipes) or file; default: chosen from the model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_overrides(p)

    p = sub.add_parser("show-config", help="print the resolved config and exit")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--recipe", help="a recipe name (sds recipes) or file; default: chosen from the model")
    p.add_argument("--prompt", default=None)
    _add_overrides(p)

    sub.add_parser("recipes", help="list the shipped recipes (the method: stages, guidance, schedules)")

    p = sub.add_parser("doctor", help="what a run would do and whether it can: torch, device, nerfacc, model, "
                                      "recipe, memory, disk")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--recipe", help="a recipe name (sds recipes) or file; default: chosen from the model")
    _add_overrides(p)

    p = sub.add_parser("resume", help="continue a run from its last checkpoint (steps=N extends a finished one)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_overrides(p, help="only " + ", ".join(f"{key}=..." for key in RESUME_KEYS) + " (steps=N extends a "
                   "finished run; any other change would not continue the same run)")

    p = sub.add_parser("export", help="re-export the mesh of a run (export.* key=value overrides, or the flags)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--format", default=None, help="comma-separated: glb,obj,ply (export.formats)")
    p.add_argument("--resolution", type=int, default=None, help="marching-cubes grid resolution (export.resolution)")
    p.add_argument("--threshold", type=float, default=None, help="density iso-level (export.threshold; default: "
                                                                 "automatic)")
    p.add_argument("--faces", type=int, default=None, help="decimate to at most this many faces (export.max_faces; "
                                                           "0: keep all)")
    p.add_argument("--no-video", action="store_true", help="export.video=false")
    _add_overrides(p, help="only export.*=... and device=... (e.g. export.texture_size=1024), applied after the "
                   "flags")

    p = sub.add_parser("view", help="write and open a self-contained HTML viewer of a run's model.glb")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--no-open", action="store_true", help="only write the HTML file")

    p = sub.add_parser("sample", help="a grid of 2D samples from the guidance model, to check it knows the prompt")
    p.add_argument("prompt")
    p.add_argument("--model", default="builtin")
    p.add_argument("--scheduler", choices=("ddim", "ddpm"), default="ddim")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--guidance-scale", type=float, default=3.0)
    p.add_argument("-n", type=int, default=8, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="PNG path (default: outputs/samples/<slug>.png)")
    p.add_argument("--device", default="auto")

    p = sub.add_parser("train-prior", help="render the primitive world and (re)train the built-in prior")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--minutes", type=float, default=None, help="stop after this long; rerun to resume")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--images-per-caption", type=int, default=None)
    p.add_argument("--resolution", type=int, default=None,
                   help="image size in pixels, a multiple of 8 (default 32, the shipped prior's); the guidance "
                        "reads it from the exported model")
    p.add_argument("--device", default="cpu")
    p.add_argument("--install", action="store_true", help="copy the exported model into the package as the default")
    for command in sub.choices.values():
        _add_global_flags(command, default=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args, extra = parser.parse_known_args(argv)
    # argparse stops collecting key=value positionals at the first flag; take the rest back.
    if extra:
        if not hasattr(args, "overrides") or not all("=" in e and not e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    for noisy in ("httpx", "httpx2", "urllib3", "filelock", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from sds.run import COMMAND_LINE

    COMMAND_LINE[:] = ["sds", *argv]  # what run.json records as the command that made or continued a run
    # A polite kill (SIGTERM) is treated like Ctrl-C: the trainer checkpoints and marks the run interrupted.
    # Both also set STOP, in case the KeyboardInterrupt is lost in a finalizer (sds.interrupts).
    from sds.interrupts import STOP

    STOP.clear()
    in_main_thread = threading.current_thread() is threading.main_thread()  # only there can Python set handlers
    previous = ({s: signal.signal(s, _raise_keyboard_interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
                if in_main_thread else {})
    try:
        return _dispatch(args)
    except ConfigError as e:
        print(f"sds: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sds: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # expected failures carry their own message; others still get one line
        from sds.errors import user_message

        message = user_message(e)
        if message is None:
            raise
        print(f"sds: error: {message}", file=sys.stderr)
        return 1
    finally:  # an in-process caller (a test, a batch worker) gets its own handlers back
        for s, handler in previous.items():
            signal.signal(s, handler)
        COMMAND_LINE.clear()


def _raise_keyboard_interrupt(signum, frame) -> None:
    from sds.interrupts import STOP

    STOP.set()  # kept even if the exception below is lost in a finalizer
    raise KeyboardInterrupt


def _choose_recipe(args) -> tuple[str, str]:
    """--recipe, else the recipe the config file or an override names, else one chosen from the model."""
    named = requested_recipe(args.config, args.overrides)
    if args.recipe is None and named is not None:
        return named, "named in the config"
    return choose_recipe(requested_model(args.config, args.overrides), args.recipe)


def _list_recipes() -> int:
    from sds.recipes import load_recipe, shipped_names

    for name in shipped_names():
        recipe = load_recipe(name)
        print(f"{name:15} {recipe.description}  [chosen for: {recipe.chosen_for}]")
    print("sds show-config --recipe NAME prints a recipe's whole config and its stages.")
    print("sds generate --recipe NAME_OR_PATH \"...\" picks one; without --recipe it is chosen from the model.")
    return 0


def check_sample_args(args) -> None:
    """`sds sample`'s arguments, checked before anything loads (ConfigError names the flag)."""
    import math

    def check(ok: bool, flag: str, message: str) -> None:
        if not ok:
            raise ConfigError(f"{flag}: {message}")

    check(bool(args.prompt.strip()), "prompt", "empty; say what to draw, e.g. sds sample \"a red cube\"")
    try:
        args.prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError("prompt: is not valid UTF-8 text") from None
    check(1 <= args.n <= 256, "-n", f"must be in [1, 256], got {args.n}")
    check(args.scheduler != "ddim" or 1 <= args.steps <= 1000, "--steps",  # ddpm runs the whole chain
          f"must be in [1, 1000], got {args.steps}")
    check(math.isfinite(args.guidance_scale) and 0 <= args.guidance_scale <= 1000, "--guidance-scale",
          f"must be a finite number in [0, 1000], got {args.guidance_scale}")
    check(args.seed >= 0, "--seed", f"must be >= 0, got {args.seed}")
    if args.out is not None:
        check(not args.out.is_dir(), "--out", f"{args.out} is a folder; give a file name such as {args.out / 'samples.png'}")
        check(args.out.suffix.lower() in (".png", ".jpg", ".jpeg"), "--out", f"must end in .png or .jpg, got {args.out}")


def export_flag_overrides(args) -> list[str]:
    """`sds export`'s flags as the export.* overrides they stand for (key=value given after them win)."""
    out = [] if args.format is None else [f"export.formats=[{args.format}]"]  # comma-separated: a YAML list
    for flag, key in (("resolution", "export.resolution"), ("threshold", "export.threshold"),
                      ("faces", "export.max_faces")):
        if getattr(args, flag) is not None:
            out.append(f"{key}={getattr(args, flag)}")
    return out + (["export.video=false"] if args.no_video else [])


def check_train_prior_args(args) -> None:
    """`sds train-prior`'s arguments, checked before the data set is rendered (ConfigError names the flag)."""
    import math

    for flag, value in (("--steps", args.steps), ("--batch-size", args.batch_size),
                        ("--images-per-caption", args.images_per_caption)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag}: must be >= 1, got {value}")
    if args.resolution is not None and (args.resolution < 8 or args.resolution % 8):
        # The UNet halves the image at each of its down blocks; 8 leaves every level whole with room to spare.
        raise ConfigError(f"--resolution: must be a multiple of 8, at least 8, got {args.resolution}")
    if args.minutes is not None and not (math.isfinite(args.minutes) and args.minutes > 0):
        raise ConfigError(f"--minutes: must be a positive number, got {args.minutes}")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise ConfigError(f"out_dir: {args.out_dir} is a file, not a folder")


def _dispatch(args) -> int:
    from sds import commands

    if getattr(args, "config", None) is not None:
        args.config = resolve_config(args.config)  # a shipped name (--config quick) or a path
    if args.command == "recipes":
        return _list_recipes()
    if args.command == "doctor":
        from sds.doctor import report, run_doctor

        recipe, reason = _choose_recipe(args)
        cfg = load_config(args.config, args.overrides, require_prompt=False, recipe=recipe)
        checks = run_doctor(cfg, recipe, reason)
        print(report(checks))
        return 1 if any(c.ok is False for c in checks) else 0
    if args.command == "show-config":
        recipe, _ = _choose_recipe(args)
        cfg = load_config(args.config, args.overrides, prompt=args.prompt, require_prompt=False, recipe=recipe)
        from sds.schedule import stage_table

        print(to_yaml(cfg), end="")
        print("".join(f"# {line}\n" for line in [f"stages over {cfg.steps} steps:", *stage_table(cfg).splitlines()]),
              end="")
        return 0
    if args.command == "generate":
        if OVERRIDE_LIKE.fullmatch(args.prompt):  # `sds generate seed=1 steps=1`: the prompt was forgotten
            raise ConfigError(f"prompt: missing ({args.prompt!r} is a key=value override, not a prompt); put the "
                              f"prompt first: sds generate \"a red cube\" {args.prompt}")
        recipe, reason = _choose_recipe(args)
        cfg = load_config(args.config, args.overrides, prompt=args.prompt, recipe=recipe)
        return commands.generate(cfg, show_progress=not args.no_progress, recipe_reason=reason,
                                 allow_unknown_words=args.allow_unknown_words)
    if args.command == "batch":
        from sds.batch import BatchOptions, run_batch

        return run_batch(BatchOptions(args.spec, args.seeds, tuple(args.overrides), args.name, args.address,
                                      args.workers, args.config, args.recipe, args.retries, not args.no_progress))
    if args.command == "resume":
        return commands.resume(args.run_dir, args.overrides, show_progress=not args.no_progress)
    if args.command == "export":
        return commands.export(args.run_dir, [*export_flag_overrides(args), *args.overrides])
    if args.command == "view":
        return commands.view(args.run_dir, open_browser=not args.no_open)
    if args.command == "sample":
        check_sample_args(args)
        return commands.sample(args)
    if args.command == "train-prior":
        check_train_prior_args(args)
        return commands.train_prior(args)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())

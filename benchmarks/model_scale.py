"""One SDS step of each real model family at its real size: peak memory and seconds per step, by part.

    nice -n 5 python benchmarks/model_scale.py --families sd21-base [--device cpu] [--dtype fp32] [--steps 3]
        [--attention-slicing] [--vae-checkpointing] [--vae-tiling] [--channels-last] [--flops] [--tiny]

For each family (``model_shapes``: SD 1.5, SD 2.1 base, SD 2.1 768 v-prediction, SDXL base, DeepFloyd IF stage I)
a diffusers folder with random weights is built once from the published configs (in --cache, in a process of its
own), then loaded in a fresh process through sds's own loader (``sds.guidance.load.load_guidance``: what
``sds generate model=PATH`` does, with the recipe sds chooses for it) and timed for --steps guidance steps on a
fixed random render at the recipe's render size. The guidance call is split into encode (resize + VAE encode with
gradient; for IF only the resize), UNet (one call on the [uncond; cond] batch), other (timesteps, noise, the SDS
maths) and backward (to the render). There is no NeRF here, so no render time: benchmarks/step_time.py times that.
Memory: on the CPU the process's peak resident set (loading included) and the peak sampled during the steps; on
CUDA the peak allocated after loading and during the steps. --flops adds the step's FLOPs (``scale_flops``,
counted on the meta device) and the floor they set at the device's measured matrix-product throughput;
``--steps 0 --flops`` prints only that. --attention-slicing, --vae-checkpointing and --channels-last turn on sds's
guidance keys of those names (the loader applies them, as in a run); --vae-tiling is the benchmark's own. On a shared CPU machine: a family whose weights alone exceed the memory
available is not started (its estimate, parameters x bytes, is printed instead) unless --force, and a family's
process ends itself at --max-rss-gib rather than meet the system's out-of-memory killer. Full-size folders are
saved in float16 (the loader upcasts them): about 2.6 GB for SD, 7 GB for SDXL, 9-18 GB for IF; --cache keeps them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from model_shapes import FAMILIES, FAMILY_NAMES, build_folder, folder_name, parameter_counts
from scale_flops import SAVER_KEYS, apply_vae_tiling, count_flops, matmul_tflops, meta_guidance, spec_tflops
from scale_parts import CAP_EXIT, GIB, PartTimer, RssSampler, available_gib, peak_rss_gib, sync

PROMPT = "a red cube"
SAVERS = ("attention-slicing", "vae-checkpointing", "vae-tiling", "channels-last")
LOAD_SHARD_GIB = 2.0
"""Folders are saved in shards of at most 2 GB; loading holds the model and one shard."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--families", default=",".join(FAMILY_NAMES), help=f"comma-separated: {', '.join(FAMILY_NAMES)}")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32", help="fp16: CUDA only (half_precision)")
    p.add_argument("--steps", type=int, default=3, help="timed guidance steps (the first is a warm-up); 0: none")
    for saver in SAVERS:
        p.add_argument(f"--{saver}", action="store_true")
    p.add_argument("--flops", action="store_true", help="count the step's FLOPs and print the floor they set")
    p.add_argument("--tiny", action="store_true", help="shrunken configs of the same shape (tests, development)")
    p.add_argument("--t5-layers", type=int, default=None,
                   help="IF: build only this many of T5-XXL's 24 layers (default: 24 on CUDA, 1 on the CPU)")
    p.add_argument("--cache", type=Path, default=Path("outputs/model_scale"), help="where built folders are kept")
    p.add_argument("--force", action="store_true", help="run a family even if its weights look too large")
    p.add_argument("--max-rss-gib", type=float, default=None,
                   help="CPU: stop a family's process when it holds more (default: the memory available when the "
                        "family starts, less 1.5 GiB), before the system's out-of-memory killer acts")
    p.add_argument("--timeout", type=float, default=None, help="seconds per family (build + measure)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--child", choices=("build", "measure"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in args.families if f not in FAMILIES]
    if unknown:
        p.error(f"unknown families {unknown}; choose from {', '.join(FAMILY_NAMES)}")
    if args.dtype == "fp16" and not args.device.startswith("cuda"):
        p.error("--dtype fp16 needs --device cuda (sds runs the model in float16 on CUDA only)")
    args.savers = tuple(s for s in SAVERS if getattr(args, s.replace("-", "_")))
    if args.t5_layers is None:
        args.t5_layers = None if args.tiny else (24 if args.device.startswith("cuda") else 1)
    return args


def family_folder(args: argparse.Namespace, name: str) -> Path:
    return args.cache / folder_name(name, args.tiny, args.t5_layers)


def run_config(folder: Path, fp16: bool, savers: tuple[str, ...] = ()):
    """The config `sds generate "a red cube" model=FOLDER` would run with (the recipe sds picks for the model), with
    the guidance keys of the memory savers asked for (``SAVER_KEYS``) turned on."""
    from sds.config import load_config
    from sds.recipes import choose_recipe

    recipe, _ = choose_recipe(str(folder), None)
    keys = [f"guidance.{SAVER_KEYS[s]}=true" for s in savers if s in SAVER_KEYS]
    return load_config(None, [f"guidance.model={folder}", f"guidance.half_precision={str(fp16).lower()}", *keys],
                       prompt=PROMPT, recipe=recipe)


def measure(args: argparse.Namespace, name: str) -> dict:
    """Load `name`'s folder with sds's loader and time args.steps guidance steps on this device."""
    from sds.guidance.load import load_guidance
    from sds.schedule import plan

    device = torch.device(args.device)
    folder = family_folder(args, name)
    cfg = run_config(folder, args.dtype == "fp16", args.savers)
    with RssSampler(args.max_rss_gib if device.type == "cpu" else None) as rss:
        started = time.perf_counter()
        guidance, _ = load_guidance(cfg.guidance, PROMPT, device)
        sync(device)
        result = {"load_s": time.perf_counter() - started, "image_size": guidance.image_size,
                  "prediction_type": guidance.prediction_type, "sds_family": guidance.family,
                  "render_px": cfg.render.resolution, "load_peak_gib": peak_rss_gib() if device.type == "cpu"
                  else torch.cuda.max_memory_allocated() / GIB}
        if "vae-tiling" in args.savers:  # the others are sds's keys: the loader applied them
            apply_vae_tiling(guidance)
        timer = PartTimer(guidance, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        generator = torch.Generator().manual_seed(0)
        batch, side = cfg.camera.batch_size, cfg.render.resolution
        steps = []
        rss.reset()
        for step in range(args.steps):
            rgb = torch.rand(batch, side, side, 3, generator=generator).to(device).requires_grad_(True)
            sync(device)
            t0 = time.perf_counter()
            out = guidance(rgb, ["front"] * batch, plan(cfg, step), generator)
            sync(device)
            t1 = time.perf_counter()
            out.loss.backward()
            sync(device)
            parts = timer.take()
            steps.append({"encode": parts["encode"], "unet": parts["unet"],
                          "other": t1 - t0 - parts["encode"] - parts["unet"], "backward": time.perf_counter() - t1,
                          "total": time.perf_counter() - t0, "grad_norm": out.grad_norm})
            print(f"  {name} step {step}: {steps[-1]['total']:.3f} s", file=sys.stderr, flush=True)
    result["steps"] = steps
    if device.type == "cpu":
        result |= {"peak_gib": max(peak_rss_gib(), rss.peak_gib), "step_peak_gib": rss.peak_gib,
                   "after_load_gib": rss.start_gib}
    else:
        result |= {"step_peak_gib": torch.cuda.max_memory_allocated(device) / GIB, "peak_gib": max(
            result["load_peak_gib"], torch.cuda.max_memory_allocated(device) / GIB)}
    return result


def weights_gib(args: argparse.Namespace, name: str) -> float:
    """Estimate: every component's parameters x bytes per parameter (all are resident while loading)."""
    bytes_per = 2 if args.dtype == "fp16" else 4
    return sum(parameter_counts(name, args.tiny, args.t5_layers).values()) * bytes_per / GIB


def child(args: argparse.Namespace, name: str, role: str, timeout_s: float | None) -> dict:
    """Run this script for one family in a fresh process (its own peak memory); return its JSON result."""
    cmd = [sys.executable, __file__, "--child", role, "--families", name, "--device", args.device,
           "--dtype", args.dtype, "--steps", str(args.steps), "--cache", str(args.cache)]
    cmd += ["--tiny"] * args.tiny + [f"--{s}" for s in args.savers]
    cmd += [] if args.t5_layers is None else ["--t5-layers", str(args.t5_layers)]
    cmd += [] if args.max_rss_gib is None else ["--max-rss-gib", str(args.max_rss_gib)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    try:  # on a timeout subprocess.run kills the child, so nothing of it outlives this family
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"{role} stopped at the time limit ({args.timeout:.0f} s for the family)"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode == CAP_EXIT:
        return {"error": f"{role} stopped: it held more than {args.max_rss_gib:.1f} GiB (the cap; see above)"}
    if done.returncode != 0 or not lines:
        return {"error": f"{role} failed (exit {done.returncode}; -9: killed, usually out of memory); its log is above"}
    return json.loads(lines[-1].removeprefix("RESULT "))


def run_family(args: argparse.Namespace, name: str) -> dict:
    """Build (if needed) and measure one family, each in a process of its own; or say why it was not run."""
    need = weights_gib(args, name) + (0 if args.tiny else LOAD_SHARD_GIB)
    have = available_gib(torch.device(args.device))
    result: dict = {"family": name, "weights_gib": weights_gib(args, name), "t5_layers": args.t5_layers,
                    "device": args.device, "dtype": args.dtype, "savers": list(args.savers)}
    if args.device == "cpu" and args.max_rss_gib is None:
        args.max_rss_gib = have - 1.5
    if need > have and not args.force:
        return result | {"error": f"not run: weights alone need {result['weights_gib']:.1f} GiB (parameters x bytes; "
                                  f"loading holds one more shard) against {have:.1f} GiB available; --force to try"}
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    if not (family_folder(args, name) / "built.json").is_file():
        built = child(args, name, "build", args.timeout)
        if "error" in built:
            return result | built
    return result | child(args, name, "measure", None if deadline is None else max(1.0, deadline - time.monotonic()))


def flops_for(args: argparse.Namespace) -> dict[str, dict]:
    """Per family: the step's counted FLOPs and the floor they set on this device. The UNet runs in args.dtype;
    sds runs a VAE that asks for it (``force_upcast``, the diffusers default: ``sds.guidance.load.vae_dtype``) in
    float32, whose throughput is measured separately (with TF32, as cuDNN's convolutions use it by default)."""
    from sds.guidance.load import vae_dtype

    device = torch.device(args.device)
    fast = torch.float16 if args.dtype == "fp16" else torch.float32
    peak = matmul_tflops(device, fast)
    peak32 = peak if fast == torch.float32 else matmul_tflops(device, torch.float32, tf32=True)
    name, spec = spec_tflops(device)
    print(f"{name}: matrix products measured at {peak:.3g} TFLOP/s ({args.dtype})"
          + ("" if fast == torch.float32 else f", {peak32:.3g} (fp32 with TF32)")
          + (f"; data sheet {spec:.0f} (fp16/bf16 dense)" if spec else ""))
    out = {}
    for family in args.families:
        cfg = run_config(family_folder(args, family), args.dtype == "fp16", args.savers)
        guidance = meta_guidance(family, args.tiny, cfg.guidance, args.savers)
        counted = count_flops(guidance, cfg.render.resolution, cfg.camera.batch_size)
        vae = getattr(guidance, "vae", None)
        vae_peak = peak32 if vae is not None and vae_dtype(vae.config, fast) == torch.float32 else peak
        floor = counted["unet"] / (peak * 1e12) + (counted["encode"] + counted["backward"]) / (vae_peak * 1e12)
        out[family] = counted | {"floor_s": floor, "peak_tflops": peak, "vae_peak_tflops": vae_peak}
    return out


def _seconds(s: float) -> str:
    return f"{s:.2f} s" if s >= 1 else f"{s * 1e3:.1f} ms"


def print_result(args: argparse.Namespace, r: dict) -> None:
    family = FAMILIES[r["family"]]
    head = f"{r['family']}: {family.label}"
    if "image_size" in r:
        head += f", {r['image_size']} px input ({r['prediction_type']}), render {r['render_px']} px"
    print(head)
    if family.name == "if-i" and not args.tiny and r.get("t5_layers") != 24 and ("steps" in r or "error" in r):
        print(f"  text encoder: T5-XXL's width with {r.get('t5_layers')} of its 24 layers (it runs once per prompt, "
              "before the steps, and is then freed); at full size it has 4.76B parameters, 17.7 GiB in fp32 "
              "(estimate, parameters x 4 B)")
    if "error" in r:
        print(f"  {r['error']}")
    steps = r.get("steps") or []
    timed = steps[1:] or steps
    median = {k: statistics.median(s[k] for s in timed) for k in ("total", "encode", "unet", "other", "backward")
              } if steps else {}
    if steps:
        print(f"  step: {median['total']:.3f} s (median of {len(timed)}{' after a warm-up' if len(steps) > 1 else ''};"
              f" first {steps[0]['total']:.3f} s) = encode {median['encode']:.3f} + UNet {median['unet']:.3f} + other "
              f"{median['other']:.3f} + backward {median['backward']:.3f}; render: none (a fixed image); "
              f"loading {r['load_s']:.1f} s")
        if args.device == "cpu":
            print(f"  memory: peak RSS {r['peak_gib']:.2f} GiB (by the end of loading {r['load_peak_gib']:.2f}; "
                  f"after loading {r['after_load_gib']:.2f}, during the steps {r['step_peak_gib']:.2f}); "
                  f"weights {r['weights_gib']:.2f} GiB (estimate: parameters x bytes)")
        else:
            print(f"  memory: peak allocated {r['step_peak_gib']:.2f} GiB during the steps "
                  f"({r['load_peak_gib']:.2f} by the end of loading)")
    f = r.get("flops")
    if f:
        ratio = f" = {median['total'] / f['floor_s']:.1f}x the floor" if steps else ""
        unit, scale = ("TFLOP", 1e12) if f["total"] >= 1e11 else ("GFLOP", 1e9)
        print(f"  {unit}: {f['total'] / scale:.2f} (encode {f['encode'] / scale:.2f}, UNet {f['unet'] / scale:.2f}, "
              f"backward {f['backward'] / scale:.2f}): floor {_seconds(f['floor_s'])} at the measured peak{ratio}")
    if r["family"] == "sd21-base" and steps and not args.tiny:
        if args.device == "cpu":
            print(f"  target (CPU peak under 12 GB): {'met' if r['peak_gib'] * GIB < 12e9 else 'NOT met'}")
        if f:
            print(f"  target (step within 2x the floor): {'met' if median['total'] <= 2 * f['floor_s'] else 'NOT met'}")


def quiet_progress() -> None:
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child == "build":
        quiet_progress()
        device = "cuda" if args.device.startswith("cuda") else "cpu"
        dtype = torch.float32 if args.tiny else torch.float16  # float16 on disk: half the memory and time to build
        build_folder(args.families[0], family_folder(args, args.families[0]), args.tiny, dtype, args.t5_layers, device)
        print("RESULT {}")
        return
    if args.child == "measure":
        print("RESULT " + json.dumps(measure(args, args.families[0])))
        return
    print(f"device {args.device} ({args.dtype}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"savers: {', '.join(args.savers) or 'none'}; folders in {args.cache}")
    flops = flops_for(args) if args.flops else {}
    results = []
    for name in args.families:
        result = run_family(args, name) if args.steps > 0 else {"family": name, "t5_layers": args.t5_layers}
        result["flops"] = flops.get(name)
        print_result(args, result)
        results.append(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

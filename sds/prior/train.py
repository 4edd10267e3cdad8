"""Training of the built-in prior: resumable, seeded, CPU or CUDA.

``sds train-prior OUT_DIR`` renders the data set (cached in OUT_DIR/data.pt), trains the UNet and the
text encoder together with an epsilon-prediction DDPM loss and caption dropout (for classifier-free
guidance), keeps EMA weights, checkpoints to OUT_DIR/ckpt.pt and exports the EMA model in diffusers format
to OUT_DIR/model/. Running the same command again resumes from the checkpoint.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from sds.errors import RunError
from sds.prior.data import DataConfig, PriorDataset, caption, make_dataset
from sds.prior.model import PriorArchitecture, build_scheduler, build_text_encoder, build_unet, save_prior
from sds.prior.world import COLORS, SHAPES
from sds.state_file import read_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PriorTrainConfig:
    arch: PriorArchitecture = field(default_factory=PriorArchitecture)
    data: DataConfig = field(default_factory=DataConfig)
    steps: int = 200000
    minutes: float | None = None  # stop after this wall time (a later run resumes)
    batch_size: int = 256
    lr: float = 1e-3
    warmup_steps: int = 200
    ema_decay: float = 0.999
    caption_drop_prob: float = 0.1
    view_prob: float = 0.5
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "cpu"


def _tokenize_all(data: PriorDataset, tokenizer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids [N, L] of each image's caption without and with its view phrase, and the empty caption."""
    colors = list(COLORS)
    plain, with_view = [], []
    for s, c, v in zip(data.shape_index.tolist(), data.color_index.tolist(), data.views):
        plain.append(caption(SHAPES[s], colors[c], None))
        with_view.append(caption(SHAPES[s], colors[c], v))

    def ids(texts):
        return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids

    return ids(plain), ids(with_view), ids([""])[0]


def _load_or_make_data(out_dir: Path, cfg: PriorTrainConfig) -> PriorDataset:
    """The rendered data set, cached in OUT_DIR/data.pt as plain tensors and text (read without unpickling code)."""
    path = out_dir / "data.pt"
    if path.exists():
        saved = read_state(path, what="prior data cache (delete it to render the data again)")
        if saved.get("config") == asdict(cfg.data):
            try:
                return PriorDataset(saved["images"], saved["shape_index"], saved["color_index"], list(saved["views"]))
            except KeyError as e:
                raise RunError(f"{path} is not a complete prior data cache (missing {e}); delete it to render "
                               "the data again") from None
    data = make_dataset(cfg.data, show_progress=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"config": asdict(cfg.data), "images": data.images, "shape_index": data.shape_index,
                "color_index": data.color_index, "views": list(data.views)}, tmp)
    os.replace(tmp, path)
    return data


def _check_same_architecture(ckpt: dict, arch: PriorArchitecture, ckpt_path: Path) -> None:
    """A checkpoint resumes only under the architecture it was trained with. A UNet's weights fit any image size,
    so without this a run at another `--resolution` would quietly go on from the old one."""
    saved = ckpt.get("config", {}).get("arch") if isinstance(ckpt.get("config"), dict) else None
    if not isinstance(saved, dict):
        return  # a checkpoint that does not say: its weights are checked against the modules when loaded
    now = asdict(arch)
    changed = [k for k in now if json.dumps(saved.get(k)) != json.dumps(now[k])]  # JSON: a saved tuple reads as a list
    if changed:
        raise RunError(f"{ckpt_path} was trained with another architecture (not the same: {', '.join(changed)}); "
                       "train into a new folder")


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1 - decay)


def train_prior(out_dir: Path, cfg: PriorTrainConfig, show_progress: bool = True) -> Path:
    """Train (or resume) and export. Returns the exported model folder."""
    from tqdm.auto import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    ckpt_path = out_dir / "ckpt.pt"
    ckpt = read_state(ckpt_path, device, "prior checkpoint") if ckpt_path.exists() else None
    if ckpt is not None:
        _check_same_architecture(ckpt, cfg.arch, ckpt_path)  # before the data set is rendered again for nothing
    data = _load_or_make_data(out_dir, cfg)
    unet = build_unet(cfg.arch).to(device)
    text_encoder, tokenizer = build_text_encoder(cfg.arch)
    text_encoder.to(device)
    scheduler = build_scheduler(cfg.arch)
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(cfg.seed)
    step = 0
    if ckpt is not None:
        try:
            for module, key in ((unet, "unet"), (text_encoder, "text_encoder"), (ema_unet, "ema_unet"),
                                (ema_text, "ema_text"), (optimizer, "optimizer")):
                module.load_state_dict(ckpt[key])
            generator.set_state(ckpt["generator"])
            step = int(ckpt["step"])
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise RunError(f"{ckpt_path} does not fit this prior's architecture or is incomplete ({e!s:.200}); "
                           "train into a new folder") from None
        log.info("resumed prior training at step %d", step)

    images = data.images.to(device)
    ids_plain, ids_view, ids_empty = (t.to(device) for t in _tokenize_all(data, tokenizer))
    alphas_cumprod = scheduler.alphas_cumprod.to(device)
    use_bf16 = device.type == "cuda"
    start_time = time.time()

    def save_checkpoint() -> None:
        state = {"unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(),
                 "ema_unet": ema_unet.state_dict(), "ema_text": ema_text.state_dict(),
                 "optimizer": optimizer.state_dict(), "generator": generator.get_state(), "step": step,
                 "config": asdict(cfg)}
        torch.save(state, ckpt_path.with_suffix(".tmp"))
        os.replace(ckpt_path.with_suffix(".tmp"), ckpt_path)
        export_dir = out_dir / "model"
        tmp_dir = out_dir / "model.tmp"
        save_prior(tmp_dir, copy.deepcopy(ema_unet).cpu(), copy.deepcopy(ema_text).cpu(), tokenizer, scheduler,
                   cfg.arch)
        if export_dir.exists():
            import shutil

            shutil.rmtree(export_dir)
        os.replace(tmp_dir, export_dir)

    bar = tqdm(total=cfg.steps, initial=step, desc="training prior", disable=not show_progress)
    while step < cfg.steps:
        if cfg.minutes is not None and time.time() - start_time > cfg.minutes * 60:
            break
        index = torch.randint(0, images.shape[0], (cfg.batch_size,), generator=generator).to(device)
        u = torch.rand(3, cfg.batch_size, generator=generator).to(device)
        x0 = images[index].float() / 127.5 - 1
        flip = u[0] < 0.5  # the shapes are mirror-symmetric, so a flip keeps the caption true
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        ids = torch.where((u[1] < cfg.view_prob)[:, None], ids_view[index], ids_plain[index])
        ids = torch.where((u[2] < cfg.caption_drop_prob)[:, None], ids_empty.expand_as(ids), ids)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (cfg.batch_size,), generator=generator).to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        ab = alphas_cumprod[t].view(-1, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            hidden = text_encoder(ids).last_hidden_state
            pred = unet(xt, t, encoder_hidden_states=hidden).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        _ema_update(ema_unet, unet, decay)
        _ema_update(ema_text, text_encoder, decay)
        step += 1
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.checkpoint_every == 0:
            save_checkpoint()
    bar.close()
    save_checkpoint()
    log.info("prior at step %d after %.1f min this run", step, (time.time() - start_time) / 60)
    return out_dir / "model"

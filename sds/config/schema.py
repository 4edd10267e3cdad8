"""The run configuration's schema: typed, frozen dataclasses whose defaults are the built-in prior's recipe.

A key's one-line docstring says what it does; how a default was found is in docs/tuning.md. Everything that
changes over a run is declared in ``stages`` (and the t schedule), in fractions of the run, and turned into a
per-step plan by ``sds.schedule.plan``. Imports no torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal


def _field(factory):
    return dataclasses.field(default_factory=factory)


@dataclass(frozen=True)
class Ramp:
    """A weight that goes linearly from ``start`` (until ``start_at``) to ``end`` (from ``end_at``); the two
    points are fractions of the run. In YAML a number (a constant) or a mapping {start, end, start_at, end_at}."""

    start: float
    end: float
    start_at: float = 0.0
    end_at: float = 0.0


def constant(value: float) -> Ramp:
    return Ramp(value, value)


@dataclass(frozen=True)
class LrScale:
    """Learning-rate multipliers per parameter group (1: the group's full rate, 0: held fixed)."""

    geometry: float = 1.0
    """Density or signed distance (and a hash grid's shared features)."""
    albedo: float = 1.0
    background: float = 1.0


@dataclass(frozen=True)
class StageConfig:
    """A stretch of the run with one way of training, ending at ``until`` (a fraction of the run)."""

    name: str = "main"
    until: float = 1.0
    """Where the stage ends, as a fraction of the run (the last stage ends at 1)."""
    shading: Literal["albedo", "lit"] = "lit"
    """"albedo": unlit colour only; "lit": lambertian. Either is grey (textureless) with probability textureless_prob."""
    textureless_prob: float = 0.0
    guidance_scale: float = 100.0
    """Classifier-free guidance scale s in eps_u + s * (eps_c - eps_u) (threestudio's and DreamFusion's s is ours - 1)."""
    lr_scale: LrScale = _field(LrScale)
    geometry_growth: float = 1.0
    """The share of each geometry step that is kept where the step grows the shape (a grid field's distance falls
    or its density rises); a step that carves is kept whole. Below 1 the shape grows slower than it carves (1:
    Adam's step as it is). Grid fields only: a hash grid's features have no direction that grows."""
    max_reach: float = 1.0
    """How far out the shape may grow, as a share of the scene box's half-width: while a voxel inside the surface
    lies farther out along an axis, no geometry step that grows the shape is taken (carving goes on), so a shape the
    prior keeps pushing outward stops short of the box instead of being cut flat by it. 1: the box itself, no limit.
    Grid sdf fields only (only they know where their surface is during the run)."""
    redistance: bool = True
    """Whether an sdf grid's distance is reset every geometry.redistance_every steps in this stage."""


BUILTIN_STAGES = (
    StageConfig("shape", until=0.3, shading="albedo", guidance_scale=50.0, max_reach=0.65),
    StageConfig("texture", until=0.9, shading="lit", guidance_scale=25.0, lr_scale=LrScale(geometry=0.3),
                redistance=False, max_reach=0.65),
    StageConfig("colour", until=1.0, shading="lit", guidance_scale=2.0, lr_scale=LrScale(geometry=0.0, albedo=8.0),
                redistance=False),
)
"""The built-in prior's recipe: the shape settles under albedo-only shading, then lit views fix the texture
while the geometry moves at 0.3 of its rate (docs/tuning.md, sweeps 6, 15 and 16), then the geometry is held while
the albedo moves fast at low guidance, which over-saturates and darkens colours less (issue 27, fourth and
fifth sessions). While the shape reaches past 0.65 of the box it takes no growing step, so light colours stop short
of the box instead of being cut by it, and held that early their cubes and cones keep more of their shape (issue 27,
eighth and tenth sessions)."""


@dataclass(frozen=True)
class GuidanceConfig:
    """The frozen text-to-image model and the SDS loss."""

    model: str = "builtin"
    """"builtin" (the shipped prior), a hub id, a local diffusers folder, or a Stable Diffusion .safetensors file."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) when `model` is a hub id."""
    model_config: str | None = None
    """A local diffusers folder of the same family that describes a single-file checkpoint (offline)."""
    loras: tuple[str, ...] = ()
    """LoRA files (UNet and text-encoder layers), each "PATH" or "PATH:WEIGHT"; `lora=PATH` on the command line adds one."""
    t_start: tuple[float, float] = (0.3, 0.98)
    """Diffusion time range (fractions of the model's training timesteps) sampled at step 0."""
    t_end: tuple[float, float] = (0.02, 0.5)
    """The range once annealing is over; the bounds move linearly from t_start to t_end."""
    t_anneal_until: float = 0.225
    """Fraction of the run over which the range moves from t_start to t_end."""
    weighting: Literal["one_minus_alpha_bar", "uniform", "sqrt_one_minus_over_alpha_bar"] = (
        "sqrt_one_minus_over_alpha_bar")
    """w(t): 1 - alpha_bar (DreamFusion), 1, or sqrt((1 - alpha_bar) / alpha_bar)."""
    view_dependent_prompts: bool = True
    """Append ", front view" / ", side view" / ... chosen from each camera."""
    negative_prompt: str = ""
    """Text for the unconditional branch of CFG."""
    perp_neg: bool = False
    """Perp-Neg (Armandpour et al. 2023): the opposite views' prompts as negatives, against the Janus problem."""
    perp_neg_weight: float = 2.0
    """Weight of the negative views in Perp-Neg."""
    half_precision: bool = False
    """Run the frozen model in float16 (CUDA only); a VAE whose config asks for float32 (force_upcast) keeps it."""
    attention_slicing: bool = False
    """Compute the UNet's attention a few heads at a time (less memory only where fused attention holds it all)."""
    vae_checkpointing: bool = False
    """Recompute the VAE encoder's activations in the backward pass, not keep them (SDXL at 1024 px needs it)."""
    channels_last: bool = False
    """Keep the UNet's and VAE's convolution weights channels-last (NHWC), the layout fast GPU kernels use."""


@dataclass(frozen=True)
class CameraConfig:
    """Random orbit cameras for training (the defaults are those of the built-in prior's training images)."""

    batch_size: int = 4
    """Views rendered per step."""
    radius_range: tuple[float, float] = (2.3, 2.7)
    """Camera distance from the centre (world units)."""
    elevation_range_deg: tuple[float, float] = (-10.0, 60.0)
    fov_range_deg: tuple[float, float] = (36.0, 44.0)
    """Vertical field of view."""


@dataclass(frozen=True)
class GridEncoding:
    """Dense voxel features read by trilinear interpolation (cheap on CPU)."""

    kind: Literal["grid"] = "grid"
    resolution: int = 48
    """Voxels per axis."""
    coarse_resolutions: tuple[int, ...] = (8, 16)
    """Coarser grids summed with the fine one, so SDS can move whole regions at once."""


@dataclass(frozen=True)
class HashGridEncoding:
    """Multi-resolution hash encoding + small MLP heads (Instant-NGP style)."""

    kind: Literal["hashgrid"] = "hashgrid"
    levels: int = 12
    log2_table_size: int = 15
    max_resolution: int = 128
    hidden_dim: int = 32
    """Width of the MLP."""


@dataclass(frozen=True)
class SdfGeometry:
    """Channel 0 is a signed distance added to a start sphere; density is VolSDF's Laplace CDF of it."""

    kind: Literal["sdf"] = "sdf"
    beta: float = 0.02
    """Laplace scale (world units): density 1 / beta inside, half that on the surface."""
    scale: float = 0.2
    """World units per unit of the stored channel."""
    redistance_every: int = 25
    """Reset the distance to the true distance to its surface every this many steps (0: never; a hash grid
    cannot be reset and logs that it is not)."""
    eikonal: float = 0.1
    """Weight of the eikonal penalty mean((|grad d| - 1)^2) over the grid's voxels (a hash grid has none)."""


@dataclass(frozen=True)
class DensityGeometry:
    """Channel 0 is a density logit plus a fog ball that SDS carves."""

    kind: Literal["density"] = "density"
    activation: Literal["softplus", "exp"] = "exp"
    blob_density: float = 0.75
    """The logit added at the centre, falling linearly to 0 at blob_radius."""


@dataclass(frozen=True)
class FieldConfig:
    """The NeRF over the cube [-bound, bound]^3: how it is stored and what its channel 0 means."""

    encoding: GridEncoding | HashGridEncoding = _field(GridEncoding)
    geometry: SdfGeometry | DensityGeometry = _field(SdfGeometry)
    bound: float = 1.0
    """Half the side of the scene box."""
    blob_radius: float = 0.47
    """Radius of the start: the sdf's start sphere or the density's fog ball."""
    albedo_init: float = 0.8
    """Albedo (every channel) at the start: from light, every colour is reached by taking channels away."""


@dataclass(frozen=True)
class RenderConfig:
    """Volume rendering during training."""

    resolution: int = 32
    """Render size in pixels (square); resized to the guidance model's input size."""
    samples_per_ray: int = 48
    """Samples per ray of the pure-torch sampler (and the step size of nerfacc's)."""
    normal_gradient_scale: float = 0.0
    """Scale of the gradient reaching the geometry through shading normals (0: normals are detached)."""
    color_depth_gradient_scale: float = 0.0
    """Scale of the gradient reaching the geometry through which colour along a ray is seen (0: only opacity)."""
    background: Literal["white", "mlp"] = "white"
    """"white" (the built-in prior's world) or "mlp": learned from the view direction."""
    random_background_prob: float = 0.0
    """Probability of a random solid background colour per view (keeps a learned background off the object)."""
    sampler: Literal["auto", "torch", "nerfacc"] = "auto"
    """"auto": nerfacc's occupancy grid on CUDA, pure torch elsewhere."""


@dataclass(frozen=True)
class OptimConfig:
    """Adam's base learning rates (each stage scales them per group)."""

    lr_grid: float = 0.03
    """Grid and hash-table features."""
    lr_mlp: float = 0.005
    """MLP weights (a hash grid's heads)."""
    lr_background: float = 0.005


@dataclass(frozen=True)
class RegularizerConfig:
    """Regulariser weights, ramps over the run."""

    orientation: Ramp = _field(lambda: constant(0.0))
    """Normals facing away from the camera (DreamFusion's orientation loss)."""
    opacity_entropy: Ramp = _field(lambda: Ramp(0.0, 1000.0, 0.1, 0.3))
    """Binary entropy of opacity: pushes pixels to fully opaque or empty."""
    normal_roughness: Ramp = _field(lambda: constant(0.0))
    """How much the sdf grid's surface normal changes from voxel to voxel (flat faces cost nothing, bumps much)."""


@dataclass(frozen=True)
class ExportConfig:
    """Mesh extraction and the files written to result/."""

    resolution: int = 128
    """Marching-cubes grid per axis."""
    threshold: float | None = None
    """Density iso-level; None: chosen so the mesh's silhouettes match the NeRF's."""
    formats: tuple[str, ...] = ("glb",)
    """Any of "glb", "obj", "ply"."""
    max_faces: int = 20000
    """Decimate to at most this many faces (0: keep all)."""
    texture_size: int = 512
    """Pixels per side of the baked texture."""
    normalize: bool = True
    """Centre the mesh at the origin and scale it to a unit bounding box."""
    video: bool = True
    """Write a turntable video."""
    preview_resolution: int = 256
    """Pixels per view (a side) of preview.png (the exported mesh above the NeRF) and of the mesh's turntable."""


def _builtin_stages() -> tuple[StageConfig, ...]:
    return BUILTIN_STAGES


@dataclass(frozen=True)
class RunConfig:
    """One prompt-to-mesh run."""

    prompt: str = ""
    """What to make, e.g. "a red cube"."""
    recipe: str = ""
    """The recipe the config was resolved with (`sds recipes`); recorded, not read back as a choice."""
    seed: int = 0
    """Seeds every random draw: the same seed and config give the same result."""
    steps: int = 500
    """Optimisation steps; the stages and ramps scale with it."""
    output_dir: str = "outputs"
    """Where run folders are made (<slug>-<hash>/<timestamp>/)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """"auto": CUDA when torch sees a GPU, else the CPU."""
    checkpoint_every: int = 100
    """Steps between checkpoints (a resumed run continues from the last one)."""
    preview_every: int = 100
    """At most this many steps between progress images (progress/step_*.png); a short run gets one every tenth."""
    stages: tuple[StageConfig, ...] = _field(_builtin_stages)
    """The method over the run: each stage's end, shading, guidance scale and learning-rate scales."""
    guidance: GuidanceConfig = _field(GuidanceConfig)
    camera: CameraConfig = _field(CameraConfig)
    field: FieldConfig = _field(FieldConfig)
    render: RenderConfig = _field(RenderConfig)
    optim: OptimConfig = _field(OptimConfig)
    reg: RegularizerConfig = _field(RegularizerConfig)
    export: ExportConfig = _field(ExportConfig)


USER_SECTIONS = ("prompt", "seed", "steps", "output_dir", "device", "checkpoint_every", "preview_every",
                 "guidance.model", "guidance.revision", "guidance.model_config", "guidance.loras",
                 "guidance.negative_prompt", "guidance.view_dependent_prompts", "guidance.perp_neg",
                 "guidance.half_precision", "guidance.attention_slicing", "guidance.vae_checkpointing",
                 "guidance.channels_last", "camera.batch_size", "render.resolution", "render.sampler", "export")
"""Keys (or sections) for users; the rest are the method, which recipes set."""

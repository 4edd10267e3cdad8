"""Prompt-to-mesh fidelity against ground truth, through the real CLI (``sds generate``).

    python benchmarks/fidelity.py [--shapes sphere,cube,...] [--colors red,blue,yellow] [--seeds 0,1]
                                  [--out outputs/fidelity] [key=value overrides for every run]

For each prompt "a <colour> <shape>" it runs ``sds generate`` (default config unless overridden) and scores
the exported mesh against the true primitive of ``sds.prior.world``:
- shape IoU: voxel occupancy of mesh vs primitive, both centred on their centres of volume, the mesh scaled
  to the primitive's volume (SDS picks the size freely), best over rotations about +Y (and the orientation);
  also, for comparison with earlier records, the same IoU with both centred on their bounding boxes
  (``iou_bbox``), which a thin tip throws off: a true cone missing its top tenth (0.1 % of its volume)
  scores 0.75 that way and 0.95 centred on volume;
- shape class: the primitive with the highest IoU; correct when it is the prompted one;
- proportion: the mesh's height over the square root of its largest horizontal cross-section, divided by the
  true primitive's (1: the right proportions; 1.3: 30 % too tall for its width), a diagnostic the IoU folds in;
- colour error: CIE76 delta E between the mean vertex albedo and the prompt colour (sRGB -> Lab);
- topology: connected components and genus (from the Euler characteristic of the welded mesh);
- cut by the scene box (from run.json): a NeRF that grows to fill its box meshes as the box, which would
  score as a fine cube; such a prompt is never counted correct;
- time to mesh (model load + train + export) and peak memory from run.json.
The scorer never sees the config. It prints a table, one summary line, and writes contact.png.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sds.prior.world import COLORS, GENUS, SHAPES, sdf

GRID = 48
EXTENT = 0.75  # the voxel grid covers [-EXTENT, EXTENT]^3 around the centre the shapes are aligned on
ROTATIONS_DEG = range(0, 90, 6)  # every primitive has a 90-degree (or finer) symmetry about +Y


@functools.cache
def _grid_points() -> np.ndarray:
    g = ((np.arange(GRID) + 0.5) / GRID * 2 - 1) * EXTENT  # voxel centres
    return np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)


@functools.cache
def _primitive_frame(shape: str, centring: str = "volume") -> tuple[np.ndarray, float]:
    """Centre (of volume, or of the bounding box) and volume of a primitive, from a fine occupancy grid."""
    g = np.linspace(-0.7, 0.7, 141)
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    inside = (sdf(shape, torch.from_numpy(pts).float()) < 0).numpy()
    box = pts[inside]
    centre = box.mean(0) if centring == "volume" else (box.min(0) + box.max(0)) / 2
    return centre, float(inside.mean() * 1.4**3)


def primitive_occupancy(shape: str, points: np.ndarray, angle_deg: float, centring: str = "volume") -> np.ndarray:
    """Occupancy of the primitive, centred as `centring` says and rotated by angle about +Y."""
    centre, _ = _primitive_frame(shape, centring)
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    return (sdf(shape, torch.from_numpy(points @ rot.T + centre).float()) < 0).numpy()


def normalized(mesh, volume: float, centring: str = "volume"):
    """A copy of the mesh centred on its centre of volume (or bounding box) and scaled to `volume`.

    Scale is set by volume, not by the longest side, so a shape is compared with a shape whatever size
    SDS chose. The centre of volume barely moves when a thin part (a cone's tip) is lost or grown, where the
    bounding box's centre shifts with it. A mesh that is not watertight is measured by its filled voxels.
    """
    unit = mesh.copy()
    filled = None if unit.is_watertight else unit.voxelized(pitch=EXTENT / GRID).fill()
    if centring == "volume":
        centre = unit.center_mass if filled is None else filled.points.mean(0)
    else:
        lo, hi = unit.bounds
        centre = (lo + hi) / 2
    unit.apply_translation(-np.asarray(centre))
    own_volume = abs(unit.volume) if filled is None else float(filled.volume)
    unit.apply_scale((volume / max(own_volume, 1e-9)) ** (1 / 3))
    return unit


def mesh_occupancy(mesh, points: np.ndarray, volume: float, centring: str = "volume") -> np.ndarray:
    """Occupancy at points of the mesh, normalized (centred, scaled to `volume`). Surface voxels from trimesh's
    voxelizer with the interior filled: no ray casting needed."""
    return normalized(mesh, volume, centring).voxelized(pitch=EXTENT / GRID).fill().is_filled(points)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@functools.cache
def _primitive_on_grid(shape: str, angle_deg: float, centring: str) -> np.ndarray:
    """The primitive's occupancy on the scoring grid: the same for every mesh, so computed once per process."""
    return primitive_occupancy(shape, _grid_points(), angle_deg, centring)


def best_iou(occ: np.ndarray, shape: str, centring: str = "volume") -> float:
    """IoU of a mesh's occupancy (from mesh_occupancy, at the primitive's volume) with the primitive, best over turns."""
    return iou(occ, _primitive_on_grid(shape, best_turn(occ, shape, centring), centring))


def best_turn(occ: np.ndarray, shape: str, centring: str = "volume") -> float:
    """The turn about +Y (degrees) at which the primitive best overlaps the mesh's occupancy."""
    return max(ROTATIONS_DEG, key=lambda a: iou(occ, _primitive_on_grid(shape, a, centring)))


# ------------------------------------------------------------------------------------ surface
# IoU at equal volume forgives a lumpy or rounded surface (a crumpled box scores 0.8 as a cube). These measure
# the surface itself, after the IoU's alignment: how far it lies from the true surface, both ways, and whether
# its normals are the true shape's (a flat face has the face's normal everywhere; a dent or a rounded edge not).

SURFACE_SAMPLES = 20000
NORMAL_TOLERANCE_DEG = 15.0
FLAT_MIN = 0.85
"""A surface passes when at least this fraction of its area has normals within NORMAL_TOLERANCE_DEG of the true
shape's. True primitives meshed by marching cubes at the exporter's voxel size score 0.95 (cube) to 1.0 (sphere);
the true field exported by sds (benchmarks/fixed_point.py, steps=1: the 48^3 grid's trilinear distance, the
exporter's smoothing and decimation) 0.88 (cube), 0.91 (cylinder, cone), 1.0 (sphere). A cube whose edges are
rounded by a tenth of its side scores 0.79; bumpy surfaces 0.6-0.8 (tests/test_fidelity.py)."""
HAUSDORFF_MAX = 0.08
"""... and no point of either surface lies further than this from the other (world units; the cube's side is 0.8).
True primitives 0.02-0.03, exported by sds up to 0.056 (the cube's corners); a dent 0.1 deep 0.1, a spike 0.2
long 0.2-0.4."""


def _sdf_gradient(shape: str, points: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Unit gradient of the true signed distance: the true surface's normal at the point nearest each point."""
    p = torch.from_numpy(points).double()
    offsets = torch.eye(3, dtype=torch.float64) * eps
    grad = torch.stack([sdf(shape, p + o) - sdf(shape, p - o) for o in offsets], -1).numpy()
    return grad / np.maximum(np.linalg.norm(grad, axis=-1, keepdims=True), 1e-12)


@functools.cache
def _true_surface_points(shape: str, count: int = SURFACE_SAMPLES) -> np.ndarray:
    """Points spread evenly over the true surface (marching cubes of the exact distance on a fine grid)."""
    import trimesh
    from skimage.measure import marching_cubes

    g = np.linspace(-0.7, 0.7, 141)
    points = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    volume = sdf(shape, torch.from_numpy(points).float()).numpy().reshape(141, 141, 141)
    v, f, _, _ = marching_cubes(volume, 0.0, spacing=(g[1] - g[0],) * 3)
    mesh = trimesh.Trimesh(v + g[0], f, process=False)
    return np.asarray(trimesh.sample.sample_surface(mesh, count, seed=0)[0])


def surface_scores(mesh, shape: str, occupancy: np.ndarray | None = None) -> dict:
    """Surface measures of a mesh against the true primitive, aligned as the IoU aligns them (centre of volume,
    equal volume, the best turn about +Y).

    - ``chamfer``: the mean distance from each surface to the other, averaged over both (world units);
    - ``hausdorff``: the largest distance from either surface to the other;
    - ``flat``: the fraction of the mesh's area whose normal is within NORMAL_TOLERANCE_DEG of the true normal;
    - ``normal_error_deg``: the mean angle between the two normals.
    """
    import trimesh
    from scipy.spatial import cKDTree

    centre, volume = _primitive_frame(shape)
    unit = normalized(mesh, volume)
    if occupancy is None:  # score_mesh passes the one it scored the IoU on
        occupancy = unit.voxelized(pitch=EXTENT / GRID).fill().is_filled(_grid_points())
    coarse = best_turn(occupancy, shape)
    samples, faces = trimesh.sample.sample_surface(unit, SURFACE_SAMPLES, seed=0)

    def placed(turn: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Points and normals in the primitive's frame (as primitive_occupancy places them), and the normals' angles."""
        a = math.radians(turn)
        rot = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
        points, normals = np.asarray(samples) @ rot.T + centre, unit.face_normals[faces] @ rot.T
        cos = np.abs((normals * _sdf_gradient(shape, points)).sum(-1)).clip(0, 1)
        return points, normals, np.degrees(np.arccos(cos))

    # The IoU's turns are 6 degrees apart; a cube 3 degrees off would lose flat area it has. Refine by normals.
    turn = min(coarse + np.arange(-3.0, 3.01, 0.5), key=lambda t: placed(t)[2].mean())
    points, normals, angle = placed(turn)
    to_truth = np.abs(sdf(shape, torch.from_numpy(points).double()).numpy())
    to_mesh, _ = cKDTree(points).query(_true_surface_points(shape))
    return {"chamfer": float((to_truth.mean() + to_mesh.mean()) / 2),
            "hausdorff": float(max(to_truth.max(), to_mesh.max())),
            "flat": float((angle <= NORMAL_TOLERANCE_DEG).mean()), "normal_error_deg": float(angle.mean())}


def surface_ok(scores: dict) -> bool:
    return scores["flat"] >= FLAT_MIN and scores["hausdorff"] <= HAUSDORFF_MAX


def elongation(occ: np.ndarray) -> float:
    """Height over the square root of the largest horizontal cross-section, of an occupancy on the scoring grid.

    Turns about +Y and the size leave it unchanged; stretching the shape vertically by s multiplies it by s.
    """
    layers = occ.reshape(GRID, GRID, GRID).sum(axis=(0, 2))  # occupied voxels per horizontal layer (axis 1 is y)
    filled = np.nonzero(layers)[0]
    if not len(filled):
        return math.nan
    return float(filled[-1] - filled[0] + 1) / math.sqrt(layers.max())  # both in voxels: the pitch cancels


def proportion(occ: np.ndarray, shape: str) -> float:
    """The mesh's elongation over the true primitive's: 1 when its height suits its width, 1.3 when 30 % too tall."""
    return elongation(occ) / elongation(_primitive_on_grid(shape, 0, "volume"))


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    c = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def score_mesh(path: Path, shape: str, color: str) -> dict:
    import trimesh

    mesh = trimesh.load(path, force="mesh", process=False)
    colors = np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0
    welded = mesh.copy()
    welded.merge_vertices(merge_tex=True, merge_norm=True)
    components = welded.split(only_watertight=False)
    euler = welded.euler_number
    genus = round((2 * len(components) - euler) / 2) if len(components) == 1 else None
    points = _grid_points()
    occupancy = {(s, c): mesh_occupancy(welded, points, _primitive_frame(s)[1], c) for s in SHAPES for c in ("volume", "bbox")}
    ious, ious_bbox = ({s: best_iou(occupancy[s, c], s, c) for s in SHAPES} for c in ("volume", "bbox"))
    mean_lab = srgb_to_lab(colors.mean(0))
    errors = {c: float(np.linalg.norm(mean_lab - srgb_to_lab(np.array(rgb)))) for c, rgb in COLORS.items()}
    return {"iou": ious[shape], "class": max(ious, key=ious.get),
            "iou_bbox": ious_bbox[shape], "class_bbox": max(ious_bbox, key=ious_bbox.get), "delta_e": errors[color],
            "color_class": min(errors, key=errors.get), "mean_rgb": colors.mean(0).round(3).tolist(),
            "components": len(components), "genus": genus, "genus_ok": genus == GENUS[shape],
            "proportion": proportion(occupancy[shape, "volume"], shape), "faces": len(mesh.faces),
            **surface_scores(welded, shape, occupancy[shape, "volume"])}


def run_prompt(prompt: str, seed: int, out: Path, overrides: list[str]) -> Path | None:
    cmd = [sys.executable, "-m", "sds.cli", "generate", prompt, f"seed={seed}", f"output_dir={out}",
           "export.formats=[glb, ply]", "--no-progress", *overrides]
    before = set(out.glob("*/*"))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    new = sorted(set(out.glob("*/*")) - before)
    if not new or not (new[-1] / "result" / "model.ply").exists():
        print(f"  FAILED {prompt!r} seed {seed}: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
    return new[-1] if new else None  # a run cut by the scene box exits 1 with its mesh written: it is scored


def render_mesh(mesh, size: int = 128) -> np.ndarray:
    """Ray-cast the exported mesh (vertex colours, Lambert light at the camera) from the preview's first view.

    Vertex colours of the welded PLY (what the scorer reads), beside the NeRF row of the exporter's preview.png
    (whose top row is the glb's texture, rendered by sds.export.raster).
    """
    from sds.cameras import camera_rays
    from sds.export.views import preview_cameras

    lo, hi = mesh.bounds
    mesh = mesh.copy()
    mesh.apply_translation(-(lo + hi) / 2)
    mesh.apply_scale(1.0 / max(float((hi - lo).max()), 1e-9))  # a centred unit box, as the exporter writes
    cams = preview_cameras(1.0, 4)
    origins, dirs = (t[0].reshape(-1, 3).numpy().astype(np.float64) for t in camera_rays(cams, size, size))
    _, rays, faces = mesh.ray.intersects_location(origins, dirs, multiple_hits=False)
    image = np.ones((size * size, 3))
    if len(rays):
        colors = np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0
        albedo = colors[mesh.faces[faces]].mean(1)
        lambert = np.abs((mesh.face_normals[faces] * dirs[rays]).sum(-1, keepdims=True))
        image[rays] = albedo * (0.35 + 0.65 * lambert)
    return (image.reshape(size, size, 3) * 255).round().astype(np.uint8)


def contact_tile(row: dict, size: int = 128) -> np.ndarray:
    """Prompt, seed and verdict on top; NeRF render (export preview, front view) left, mesh render right."""
    import trimesh
    from PIL import Image, ImageDraw

    result = Path(row["run"]) / "result"
    blank = np.full((size, size, 3), 255, np.uint8)
    nerf = blank
    if (result / "preview.png").exists():
        from sds.export.media import preview_view

        preview = np.asarray(Image.open(result / "preview.png").convert("RGB"))
        nerf = np.asarray(Image.fromarray(preview_view(preview, row=1, view=0)).resize((size, size)))
    mesh = render_mesh(trimesh.load(result / "model.ply", force="mesh", process=False), size) \
        if (result / "model.ply").exists() else blank
    label = Image.new("RGB", (2 * size, 30), "white")
    draw = ImageDraw.Draw(label)
    verdict = (f"{row['class']} IoU {row['iou']:.2f} flat {row.get('flat', math.nan):.2f} dE {row['delta_e']:.0f} g{row['genus']}"
               + (" BOX" if row.get("touches_bound") else "") if "iou" in row else "FAILED")
    draw.text((4, 2), f"{row['prompt']} (seed {row['seed']})", fill="black")
    draw.text((4, 16), verdict, fill="darkgreen" if row.get("ok") else "darkred")
    return np.concatenate([np.asarray(label), np.concatenate([nerf, mesh], 1)], 0)


def contact_sheet(rows: list[dict], path: Path, columns: int = 4) -> None:
    """Every prompt's tile (failures included) in a grid: for a person to look at."""
    from PIL import Image

    tiles = [contact_tile(r) for r in rows]
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    grid = np.concatenate([np.concatenate(tiles[i:i + columns], 1) for i in range(0, len(tiles), columns)], 0)
    Image.fromarray(grid).save(path)


def shape_right(row: dict, class_key: str = "class") -> bool:
    """The prompted primitive (by the class under `class_key`), one component, the right genus, and not cut by the
    scene box: a field that fills its box meshes as the box, which the scorer would call a cube. (The verdict of
    the records before issue 27.)"""
    return (row[class_key] == row["prompt"].split()[-1] and row["components"] == 1 and row["genus_ok"]
            and not row.get("touches_bound", False))


def is_correct(row: dict, class_key: str = "class") -> bool:
    """shape_right, and its surface the true one's (surface_ok: flat where the primitive is flat, no dent or
    spike): a crumpled box is not a cube."""
    return shape_right(row, class_key) and "flat" in row and surface_ok(row)


def summary(rows: list[dict]) -> str:
    scored = [r for r in rows if "iou" in r]
    if not scored:
        return f"fidelity: 0/{len(rows)} correct (no mesh was scored)"
    ok_bbox = sum(shape_right(r, "class_bbox") for r in scored if "class_bbox" in r)
    return (f"fidelity: {sum(r['ok'] for r in rows)}/{len(rows)} correct "
            f"(the shape right, surface aside: {sum(shape_right(r) for r in scored)}/{len(rows)}), "
            f"mean IoU {statistics.mean(r['iou'] for r in scored):.3f}, "
            f"worst IoU {min(r['iou'] for r in scored):.3f} "
            f"(centred on bounding boxes: {ok_bbox}/{len(rows)} shape right, "
            f"mean IoU {statistics.mean(r.get('iou_bbox', math.nan) for r in scored):.3f}, "
            f"worst {min(r.get('iou_bbox', math.nan) for r in scored):.3f}), mean dE {statistics.mean(r['delta_e'] for r in scored):.1f}, "
            f"surface right {sum(surface_ok(r) for r in scored if 'flat' in r)}/{len(rows)} "
            f"(mean flat {statistics.mean(r.get('flat', math.nan) for r in scored):.3f}, "
            f"worst Hausdorff {max(r.get('hausdorff', math.nan) for r in scored):.3f}), "
            f"cut by the box {sum(bool(r.get('touches_bound')) for r in scored)}, "
            f"median time {statistics.median(r['time'] for r in scored):.0f} s, "
            f"max peak {max(r['peak'] for r in scored):.0f} MiB")


def by_shape(rows: list[dict]) -> str:
    """One line per shape: how many are correct, their mean IoU and their median proportion."""
    lines = []
    for shape in SHAPES:
        mine = [r for r in rows if r["prompt"].split()[-1] == shape]
        scored = [r for r in mine if "iou" in r]
        if not mine:
            continue
        props = [r["proportion"] for r in scored if "proportion" in r]
        flat = [r["flat"] for r in scored if "flat" in r]
        lines.append(f"  {shape:9} {sum(r['ok'] for r in mine)}/{len(mine)} correct"
                     + (f", mean IoU {statistics.mean(r['iou'] for r in scored):.3f}" if scored else "")
                     + (f", worst {min(r['iou'] for r in scored):.3f}" if scored else "")
                     + (f", flat {statistics.mean(flat):.3f}" if flat else "")
                     + (f", proportion {statistics.median(props):.2f}" if props else ""))
    return "\n".join(lines)


def by_color(rows: list[dict]) -> str:
    """One line per colour: how many are correct and the mean colour error (the target: no colour's above 10)."""
    lines = []
    for color in COLORS:
        mine = [r for r in rows if r["prompt"].split()[1] == color]
        scored = [r for r in mine if "delta_e" in r]
        if mine:
            lines.append(f"  {color:9} {sum(r['ok'] for r in mine)}/{len(mine)} correct"
                         + (f", mean dE {statistics.mean(r['delta_e'] for r in scored):.1f}" if scored else ""))
    return "\n".join(lines)


def rescore(rows: list[dict]) -> list[dict]:
    """Score every row's kept mesh again with this scorer (new measures for old runs); time and memory are kept."""
    out = []
    for row in rows:
        mesh_path = Path(row["run"]) / "result" / "model.ply"
        if "iou" not in row or not mesh_path.exists():
            out.append(row)
            continue
        _, color, shape = row["prompt"].split()
        new = dict(row, **score_mesh(mesh_path, shape, color))
        info_path = Path(row["run"]) / "run.json"
        export = (json.loads(info_path.read_text()).get("export") or {}) if info_path.exists() else {}
        new["touches_bound"] = export.get("touches_bound", row.get("touches_bound", False))
        new["ok"] = is_correct(new)
        out.append(new)
    return out


def report(rows: list[dict], args: argparse.Namespace) -> None:
    """The summary, the tables by shape and colour, and (unless --no-contact-sheet) the contact sheet."""
    print(summary(rows))
    print(by_shape(rows))
    print(by_color(rows))
    if not args.no_contact_sheet:
        contact_sheet(rows, args.out / "contact.png", args.columns)
        print(f"contact sheet: {args.out / 'contact.png'}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--colors", default="red,blue,yellow", help='comma-separated, or "all" (the world\'s nine)')
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--out", type=Path, default=Path("outputs/fidelity"))
    parser.add_argument("--columns", type=int, default=4, help="tiles per row of the contact sheet")
    parser.add_argument("--no-contact-sheet", action="store_true",
                        help="no contact sheet (it renders every mesh again: about 30 s a tile on 2 busy cores); "
                             "--report-only builds it later from results.json")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild the summary and contact sheet from OUT/results.json without running")
    parser.add_argument("--rescore", action="store_true",
                        help="with --report-only: score the kept meshes again first (and rewrite results.json)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.json"
    if args.report_only:
        rows = json.loads(results.read_text())
        if args.rescore:
            rows = rescore(rows)
            results.write_text(json.dumps(rows, indent=1))
        report(rows, args)
        return
    rows = []

    def record(row: dict) -> None:
        rows.append(row)
        results.write_text(json.dumps(rows, indent=1))  # after every prompt: a stopped run keeps its rows

    print(f"{'prompt':22} seed  class     IoU   prop  dE    comp genus  flat  Hausd  time_s  peak_MiB", flush=True)
    # Colour-major: every shape is covered early, so a run stopped part-way still spans the vocabulary.
    for color in (COLORS if args.colors == "all" else args.colors.split(",")):
        for shape in args.shapes.split(","):
            for seed in map(int, args.seeds.split(",")):
                prompt = f"a {color} {shape}"
                started = time.time()
                run = run_prompt(prompt, seed, args.out, args.overrides)
                mesh_path = run / "result" / "model.ply" if run else None
                if mesh_path is None or not mesh_path.exists():
                    record({"prompt": prompt, "seed": seed, "ok": False, "run": str(run or args.out)})
                    continue
                s = score_mesh(mesh_path, shape, color)
                info = json.loads((run / "run.json").read_text())
                s.update(prompt=prompt, seed=seed, run=str(run), time=sum(info["timings_s"].values()),
                         wall=time.time() - started, peak=info["peak_memory_mb"].get("cpu_rss", float("nan")),
                         touches_bound=info["export"]["touches_bound"])
                s["ok"] = is_correct(s)
                record(s)
                print(f"{prompt:22} {seed:4}  {s['class']:8} {s['iou']:.3f} {s['proportion']:5.2f} {s['delta_e']:5.1f} {s['components']:4} "
                      f"{s['genus']!s:5} {s['flat']:.3f} {s['hausdorff']:.3f} {s['time']:7.0f} {s['peak']:8.0f}"
                      + ("  cut by the scene box" if s["touches_bound"] else ""), flush=True)
    report(rows, args)


if __name__ == "__main__":
    main()

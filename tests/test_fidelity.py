"""The fidelity scorer on ground truth, and a short prompt-to-mesh run scored with loose thresholds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from fidelity import (  # noqa: E402
    _grid_points,
    _primitive_frame,
    by_shape,
    contact_sheet,
    is_correct,
    mesh_occupancy,
    proportion,
    render_mesh,
    rescore,
    run_prompt,
    score_mesh,
    surface_ok,
    surface_scores,
)

from sds.prior.world import COLORS, sdf  # noqa: E402


def _true_mesh(shape: str, color: str, path: Path, y_max: float = np.inf, n: int = 72) -> Path:
    """Marching cubes of the true primitive on an n^3 grid (cut flat above y_max, if given)."""
    from skimage.measure import marching_cubes

    g = np.linspace(-0.7, 0.7, n)
    points = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    distance = np.maximum(sdf(shape, torch.from_numpy(points).float()).numpy(), points[:, 1] - y_max)
    volume = distance.reshape(n, n, n)
    v, f, _, _ = marching_cubes(volume, 0.0, spacing=(g[1] - g[0],) * 3)
    rgba = (np.array([*COLORS[color], 1.0]) * 255).astype(np.uint8)
    trimesh.Trimesh(v, f[:, ::-1], vertex_colors=np.tile(rgba, (len(v), 1))).export(path)
    return path


@pytest.mark.parametrize("shape,color", [("torus", "blue"), ("cube", "yellow")])
def test_scorer_on_ground_truth(shape, color, tmp_path):
    s = score_mesh(_true_mesh(shape, color, tmp_path / "m.ply"), shape, color)
    assert s["class"] == shape and s["iou"] > 0.9 and s["delta_e"] < 1.0 and s["color_class"] == color
    assert s["components"] == 1 and s["genus_ok"] and surface_ok(s)
    assert abs(s["proportion"] - 1) < 0.05


# ------------------------------------------------------------------------------------ the surface criterion
# True primitives and deliberately spoiled ones, meshed by marching cubes at the exporter's voxel size (pitch 1/64).


def _mesh_of(distance, n: int = 96, extent: float = 0.75) -> trimesh.Trimesh:
    from skimage.measure import marching_cubes

    g = np.linspace(-extent, extent, n)
    points = torch.from_numpy(np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)).float()
    v, f, _, _ = marching_cubes(distance(points).numpy().reshape(n, n, n), 0.0, spacing=(g[1] - g[0],) * 3)
    return trimesh.Trimesh(v + g[0], f[:, ::-1])


def _surface_along_z(shape: str) -> float:
    """Where the primitive's surface crosses the +z axis at y = 0 (bisection on its distance)."""
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        inside = sdf(shape, torch.tensor([[0.0, 0.0, mid]])).item() < 0
        lo, hi = (mid, hi) if inside else (lo, mid)
    return lo


def _dented(shape: str, depth: float = 0.1, radius: float = 0.2):
    centre = torch.tensor([0.0, 0.0, _surface_along_z(shape) + radius - depth])  # a spherical bite in the side
    return lambda p: torch.maximum(sdf(shape, p), radius - (p - centre).norm(dim=-1))


def _spiked(shape: str, length: float = 0.2, radius: float = 0.03):
    a = torch.tensor([0.0, 0.0, 0.0])
    b = torch.tensor([0.0, 0.0, _surface_along_z(shape) + length])  # a thin rod out of the side

    def distance(p):
        h = ((p - a) @ (b - a) / ((b - a) @ (b - a))).clamp(0, 1)
        return torch.minimum(sdf(shape, p), (p - a - h[..., None] * (b - a)).norm(dim=-1) - radius)
    return distance


def _rounded_cube(r: float):
    def distance(p):  # the cube shrunk by r, then grown by r: its edges and corners rounded with radius r
        q = p.abs() - (0.4 - r)
        return q.clamp(min=0).norm(dim=-1) + q.max(-1).values.clamp(max=0) - r
    return distance


def _bumpy(shape: str, amplitude: float = 0.03, frequency: float = 12.0):
    return lambda p: sdf(shape, p) + amplitude * torch.sin(frequency * p).prod(-1)


@pytest.mark.parametrize("shape", ["sphere", "cube", "cylinder", "cone", "torus"])
def test_surface_of_a_true_primitive_passes(shape):
    scores = surface_scores(_mesh_of(lambda p: sdf(shape, p)), shape)
    assert surface_ok(scores), scores
    assert scores["flat"] >= 0.94 and scores["hausdorff"] < 0.035 and scores["chamfer"] < 0.01


@pytest.mark.parametrize("shape,spoil", [
    ("cube", _rounded_cube(0.08)),  # edges rounded by a tenth of the side: IoU 0.98, a rounded box
    ("cube", _dented("cube")), ("cone", _dented("cone")), ("torus", _dented("torus")),
    ("sphere", _spiked("sphere")), ("cylinder", _spiked("cylinder")),
    ("cube", _bumpy("cube")), ("cylinder", _bumpy("cylinder")),
], ids=["rounded-cube", "dented-cube", "dented-cone", "dented-torus", "spiked-sphere", "spiked-cylinder",
        "bumpy-cube", "bumpy-cylinder"])
def test_surface_of_a_spoiled_primitive_fails(shape, spoil):
    scores = surface_scores(_mesh_of(spoil), shape)
    assert not surface_ok(scores), scores


def test_surface_scores_do_not_depend_on_size_position_or_turn():
    mesh = _mesh_of(lambda p: sdf("cube", p))
    moved = mesh.copy()
    moved.apply_transform(trimesh.transformations.rotation_matrix(np.radians(33), [0, 1, 0]))
    moved.apply_scale(1.7)
    moved.apply_translation([0.3, -0.2, 0.5])
    a, b = surface_scores(mesh, "cube"), surface_scores(moved, "cube")
    assert abs(a["flat"] - b["flat"]) < 0.02 and abs(a["hausdorff"] - b["hausdorff"]) < 0.01


def test_scorer_measures_proportion(tmp_path):
    # Stretched vertically by 1.3 (and turned, which must not matter), a true cylinder is 30 % too tall for its
    # width; squashed by 0.8, 20 % too flat. Trained cylinders came out about 1.4. (score_mesh reports the same
    # measure as "proportion"; the ground-truth test above checks it there.)
    path = _true_mesh("cylinder", "red", tmp_path / "m.ply")
    volume = _primitive_frame("cylinder")[1]
    for stretch in (1.3, 0.8):
        mesh = trimesh.load(path, force="mesh")
        mesh.apply_transform(trimesh.transformations.rotation_matrix(np.radians(20), [0, 1, 0]))
        mesh.apply_scale([1.0, stretch, 1.0])
        measured = proportion(mesh_occupancy(mesh, _grid_points(), volume), "cylinder")
        assert abs(measured - stretch) < 0.06, (stretch, measured)


def test_scorer_is_not_thrown_off_by_a_lost_tip(tmp_path):
    # A cone without its top tenth (the apex is above y = 0.41; 0.1 % of the volume) is still a cone.
    # Centred on bounding boxes it scored 0.75 (the box's centre drops with the tip); on volume it barely moves.
    s = score_mesh(_true_mesh("cone", "red", tmp_path / "m.ply", y_max=0.41), "cone", "red")
    assert s["class"] == "cone" and s["iou"] > 0.88
    assert s["iou_bbox"] < s["iou"] - 0.08  # the bounding-box figure, kept for comparison, is the fragile one


def test_rescore_scores_kept_meshes_again_and_keeps_the_rest(tmp_path):
    run = tmp_path / "run"
    (run / "result").mkdir(parents=True)
    _true_mesh("cone", "red", run / "result" / "model.ply")
    stale = {"prompt": "a red cone", "seed": 0, "run": str(run), "iou": 0.1, "class": "sphere", "ok": False,
             "time": 123.0, "peak": 456.0}
    failed = {"prompt": "a red cube", "seed": 0, "ok": False, "run": str(tmp_path / "missing")}
    new = rescore([stale, failed])
    assert new[0]["class"] == "cone" and new[0]["iou"] > 0.9 and new[0]["ok"] and "proportion" in new[0]
    assert new[0]["time"] == 123.0 and new[0]["peak"] == 456.0 and new[1] == failed
    assert "cone      1/1 correct" in by_shape(new) and "cube      0/1 correct" in by_shape(new)


def test_a_mesh_cut_by_the_scene_box_is_never_correct(tmp_path):
    # A NeRF that fills its box meshes as the box: a fine "cube" to the scorer. run.json's flag (written by the
    # export) overrules the shape; rescore reads it for runs exported again since.
    run = tmp_path / "run"
    (run / "result").mkdir(parents=True)
    _true_mesh("cube", "yellow", run / "result" / "model.ply")
    (run / "run.json").write_text(json.dumps({"export": {"touches_bound": True}}))
    row = {"prompt": "a yellow cube", "seed": 0, "run": str(run), "iou": 0.9, "class": "cube", "ok": True,
           "time": 1.0, "peak": 1.0}
    [new] = rescore([row])
    assert new["class"] == "cube" and new["iou"] > 0.9 and new["touches_bound"] and not new["ok"]
    assert is_correct(dict(new, touches_bound=False))


def test_scorer_rejects_wrong_shape_and_colour(tmp_path):
    s = score_mesh(_true_mesh("sphere", "red", tmp_path / "m.ply"), "torus", "blue")
    assert s["class"] == "sphere" and s["iou"] < 0.6 and s["delta_e"] > 50 and not s["genus_ok"]


def test_contact_sheet_shows_the_mesh_and_keeps_failures(tmp_path):
    import imageio.v3 as iio

    run = tmp_path / "run"
    (run / "result").mkdir(parents=True)
    mesh_path = _true_mesh("cube", "blue", run / "result" / "model.ply", n=24)  # coarse: the sheet's speed
    image = render_mesh(trimesh.load(mesh_path, force="mesh", process=False), size=64)
    centre, corner = image[32, 32].astype(int), image[0, 0]
    assert centre[2] > centre[0] + 60 and centre[2] > centre[1] + 60  # the blue cube is in the middle
    assert (corner == 255).all()  # white around it
    rows = [{"prompt": "a blue cube", "seed": 0, "run": str(run), "ok": True, "class": "cube", "iou": 0.97, "flat": 0.95,
             "delta_e": 0.5, "genus": 0},
            {"prompt": "a red cone", "seed": 1, "ok": False, "run": str(tmp_path / "missing")}]
    contact_sheet(rows, tmp_path / "contact.png", columns=2)
    sheet = iio.imread(tmp_path / "contact.png")
    assert sheet.shape[1] == 2 * 2 * 128  # two tiles per row, each NeRF render + mesh render


def test_cfg_benchmark_measures_agreement_and_chroma(tmp_path):
    from cfg_scale import chroma, mesh_agreement

    cube = trimesh.load(_true_mesh("cube", "red", tmp_path / "cube.ply", n=40), force="mesh")
    turned = cube.copy()
    turned.apply_transform(trimesh.transformations.rotation_matrix(np.radians(30), [0, 1, 0]))
    turned.apply_scale(1.7)  # size and a turn about +Y do not count as a difference between seeds
    torus = trimesh.load(_true_mesh("torus", "red", tmp_path / "torus.ply", n=40), force="mesh")
    assert mesh_agreement(cube, turned) > 0.9
    assert mesh_agreement(cube, torus) < 0.5
    assert chroma([0.5, 0.5, 0.5]) < 1 and chroma(COLORS["blue"]) > 60


def test_cfg_benchmark_can_vary_only_the_texture_stage_scale():
    from cfg_scale import scale_override

    from sds.config import load_config

    default = load_config(None, [], prompt="x").stages
    whole = load_config(None, [scale_override(10.0, default, False)], prompt="x").stages
    texture = load_config(None, [scale_override(10.0, default, True)], prompt="x").stages
    assert [s.guidance_scale for s in whole] == [10.0, 10.0, 10.0]
    assert [s.guidance_scale for s in texture] == [50.0, 10.0, 2.0]  # the shape and colour stages keep theirs
    assert [s.until for s in texture] == [s.until for s in default]


@pytest.mark.slow
def test_short_prompt_to_mesh_run_is_roughly_right(tmp_path):
    run = run_prompt("a red sphere", 0, tmp_path, ["steps=100", "export.resolution=64", "export.video=false"])
    s = score_mesh(run / "result" / "model.ply", "sphere", "red")
    # 100 steps is under a quarter of a default run (every stage scaled to it): the shape is there (IoU 0.965 on
    # 2026-12-05), the albedo is still settling, so the colour check is the nearest palette colour, not a dE bound.
    assert s["class"] == "sphere" and s["iou"] > 0.7 and s["components"] == 1
    assert s["color_class"] == "red", s["mean_rgb"]


def test_silhouette_push_averages_the_descent_on_the_ring_outside_the_object():
    from types import SimpleNamespace

    from silhouette_push import outside_ring, silhouette_push

    from sds.config import RunConfig

    images = torch.ones(2, 3, 16, 16)
    images[:, :, 6:10, 6:10] = torch.tensor([0.9, 0.1, 0.1]).view(3, 1, 1)  # a 4x4 red square on white
    ring = outside_ring(images)
    assert ring.sum() == 2 * (36 - 16) and (ring[:, :, 5:11, 5:11].sum() == ring.sum())  # the 6x6 border only

    class RedderEverywhere:  # descent direction +1 in the red channel of every pixel, whatever t is
        t_ranges = []

        def __call__(self, rgb, labels, p, gen):
            self.t_ranges.append(p.t_range)
            return SimpleNamespace(loss=-rgb[..., 0].sum())

    guidance = RedderEverywhere()
    albedo = (0.9, 0.1, 0.1)
    push = silhouette_push(guidance, images, ["front", "back"], albedo, t=0.7, repeats=2, cfg=RunConfig())
    step = np.array(albedo) - 1.0
    assert push == pytest.approx(step[0] / np.linalg.norm(step), rel=1e-5)  # red is already in white: -0.078
    assert guidance.t_ranges == [pytest.approx((0.69, 0.7))] * 2  # the one time asked for

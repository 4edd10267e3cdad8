"""benchmarks/mesh_refine.py's differentiable pieces against analytic cases: the antialiased silhouette and its
gradient, the large-steps solve and the normals' total variation."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import trimesh
from scipy.sparse.linalg import splu

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import mesh_refine  # noqa: E402

from sds.cameras import orbit_cameras  # noqa: E402
from sds.export.raster import rasterize  # noqa: E402


def _view(mesh: trimesh.Trimesh, elevation: float, size: int = 32):
    """(vertices, faces, face pairs, edge vertices, render, coverage, hard coverage) of a mesh seen from one camera."""
    v = torch.tensor(mesh.vertices, dtype=torch.float32, requires_grad=True)
    f = torch.tensor(mesh.faces, dtype=torch.long)
    pairs, edges = torch.tensor(mesh.face_adjacency), torch.tensor(mesh.face_adjacency_edges)
    cams = orbit_cameras(torch.tensor([30.0]), torch.tensor([elevation]), torch.tensor([2.5]), torch.tensor([40.0]))
    rgb, alpha = mesh_refine.soft_render(v, f, torch.full_like(v, 0.5), cams.c2w[0], 40.0, size, cams.position[0],
                                         pairs, edges)
    hard = rasterize(v.detach(), f, cams.c2w[0], 40.0, size)[0] >= 0
    return v, f, pairs, edges, rgb, alpha, hard, cams


SHAPES = {"sphere": lambda: trimesh.creation.icosphere(subdivisions=3, radius=0.6),
          "torus": lambda: trimesh.creation.torus(0.5, 0.18, major_sections=48, minor_sections=16)}


@pytest.mark.parametrize("shape", SHAPES)
def test_the_silhouette_is_antialiased_without_fattening_or_holes(shape):
    v, f, _, _, rgb, alpha, hard, _ = _view(SHAPES[shape](), elevation=35.0)
    near_background = torch.nn.functional.max_pool2d((~hard)[None, None].float(), 3, 1, 1)[0, 0] > 0
    near_object = torch.nn.functional.max_pool2d(hard[None, None].float(), 3, 1, 1)[0, 0] > 0
    assert (alpha[hard] >= 0.5).all() and (alpha[~hard] <= 0.5).all()
    # Only pixels beside the background change: the torus's inner rim, seen over its own far side, stays opaque.
    assert (alpha[hard & ~near_background] == 1).all() and (alpha[~near_object] == 0).all()
    assert 0 < int(((alpha > 0) & (alpha < 1)).sum()) < int(hard.sum())
    assert float(alpha.detach().sum()) == pytest.approx(float(hard.sum()), rel=0.03)  # no fatter than the object
    assert torch.allclose(rgb[alpha == 0], torch.ones(3))  # white where nothing covers
    lit = rgb[alpha == 1]
    assert lit.max() <= 0.5 + 1e-5 and lit.min() >= 0.5 * 0.35 - 1e-5  # albedo x (ambient .. 1)


def test_the_silhouette_gradient_is_the_growth_of_the_covered_area():
    """Scaling a sphere by (1 + e) about its centre grows its covered area by about 2 e x the area: the coverage's
    gradient along that direction says so, and agrees with finite differences."""
    v, f, pairs, edges, _, alpha, hard, cams = _view(SHAPES["sphere"](), elevation=20.0)
    alpha.sum().backward()
    along = float((v.grad * v.detach()).sum())

    def area(scale: float) -> float:
        return float(mesh_refine.soft_render(v.detach() * scale, f, torch.full_like(v, 0.5), cams.c2w[0], 40.0, 32,
                                             cams.position[0], pairs, edges)[1].sum())

    h = 0.01
    assert along == pytest.approx((area(1 + h) - area(1 - h)) / (2 * h), rel=0.15)
    assert along == pytest.approx(2 * float(hard.sum()), rel=0.15)


def test_smooth_solve_is_the_inverse_of_i_plus_lambda_l_with_its_gradient():
    box = trimesh.creation.box()
    lap = mesh_refine.uniform_laplacian(len(box.vertices), box.edges_unique)
    assert np.allclose(lap.sum(1), 0) and (lap.diagonal() > 0).all()
    a = (sp.eye(len(box.vertices)) + 3.0 * lap).tocsc()
    u = torch.randn(len(box.vertices), 3, dtype=torch.float64, requires_grad=True)
    v = mesh_refine.SmoothSolve.apply(u, splu(a))
    dense = torch.tensor(a.toarray())
    assert torch.allclose(v, torch.linalg.solve(dense, u.detach()), atol=1e-10)
    weights = torch.randn_like(v)
    (v * weights).sum().backward()
    assert torch.allclose(u.grad, torch.linalg.solve(dense.T, weights), atol=1e-10)


@pytest.mark.parametrize("fold_deg", [0.0, 90.0, 150.0])
def test_normal_total_variation_is_edge_length_times_the_fold_angle(fold_deg):
    a = math.radians(fold_deg)
    # Two unit right triangles sharing the edge (0,0,0)-(0,0,1), the second turned about it by the fold angle.
    v = torch.tensor([[0, 0, 0], [0, 0, 1], [1, 0, 0], [-math.cos(a), math.sin(a), 0]], dtype=torch.float32)
    f = torch.tensor([[0, 2, 1], [0, 1, 3]])
    mesh = trimesh.Trimesh(v.numpy(), f.numpy(), process=False)
    tv = mesh_refine.normal_total_variation(v, f, torch.tensor(mesh.face_adjacency),
                                            torch.tensor(mesh.face_adjacency_edges))
    assert float(tv) == pytest.approx(1.0 * math.sqrt(a * a + 1e-4), rel=1e-4)

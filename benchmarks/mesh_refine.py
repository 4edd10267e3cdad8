"""Does a mesh refinement stage pay? Refine a finished run's exported mesh with SDS, as Magic3D's second stage does.

    python benchmarks/mesh_refine.py RUN_DIR [--steps 300] [--tv 50] [--t-max 0.8] [--out refined.ply]

The run's ``result/model.ply`` (decimated to --faces) goes back to world units (run.json's export placement) and
is optimised for --steps steps: each step renders the run's batch of views from its own training cameras through a
differentiable rasteriser (``soft_render``), takes the run's guidance model's SDS gradient at the texture stage's
settings (the run's last step's plan; --t-max widens its timestep range), and moves the vertices and per-vertex
albedo with Adam. Vertices are parametrised as u = (I + lam L) v (Nicolet et al. 2021, "Large steps in inverse
rendering"), so a noisy gradient moves smooth regions, not single vertices; --tv weights the normals' total
variation over the mesh's edges (edge length x the angle between the two faces' normals: a flat face costs
nothing, an edge the same sharp or rounded, bumps much). Topology is fixed, so a torus cannot close. Prints the
fidelity scores (benchmarks/fidelity.py) of the mesh before and after as JSON; docs/tuning.md has the results.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import splu

sys.path.insert(0, str(Path(__file__).parent))
from fidelity import is_correct, score_mesh  # noqa: E402  (a sibling script)

from sds.export.raster import candidate_pixels, project, rasterize, screen_weights  # noqa: E402
from sds.field.shading import lambertian  # noqa: E402

EDGE_WIDTH = 1.0
"""Pixels over which the silhouette's coverage ramps from 0 to 1 (1: a pixel-wide box filter across a straight edge)."""


def vertex_and_face_normals(v: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vertex normals (area-weighted face normals summed) [V, 3] and unit face normals [F, 3]."""
    fn = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=-1)
    vn = torch.zeros_like(v).index_add(0, f[:, 0], fn).index_add(0, f[:, 1], fn).index_add(0, f[:, 2], fn)
    return F.normalize(vn, dim=-1), F.normalize(fn, dim=-1)


def silhouette_coverage(pix: torch.Tensor, f: torch.Tensor, covered: torch.Tensor, face_pairs: torch.Tensor,
                        edge_vertices: torch.Tensor, size: int, width: float = EDGE_WIDTH) -> torch.Tensor:
    """[size * size] coverage of a closed mesh's view: the hard coverage (covered [size * size] bool, the z-buffer's),
    antialiased across the silhouette so the silhouette's vertices get a gradient.

    A silhouette edge joins a front face to a back face (face_pairs [E, 2] sharing edge_vertices [E, 2]). A pixel
    within width / 2 of one, on the object's side or off it, gets coverage clamp(0.5 +- d / width, 0, 1) from its
    nearest (d: distance to the projected edge in pixels, + inside), but only where the pixel a pixel's width across
    the edge lies on the other side of the silhouette: an edge seen in front of the object's own surface (a torus's inner
    rim, an occluded fold) separates surface from surface, not object from background. Unbiased: the coverage is
    0.5 on the silhouette itself (nvdiffrast's antialiasing does the same between pixel pairs)."""
    tri = pix[f]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    front = (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) < 0
    edges = edge_vertices[front[face_pairs[:, 0]] != front[face_pairs[:, 1]]]
    alpha = covered.float()
    if not len(edges):
        return alpha
    a, b = pix[edges[:, 0]], pix[edges[:, 1]]
    reach = width / 2 + 1
    lo = (torch.minimum(a, b).detach() - reach).ceil().clamp(0, size - 1).long()
    extent = ((torch.maximum(a, b).detach() + reach).floor().clamp(0, size - 1).long() - lo + 1).clamp(min=0)
    which, xs, ys = candidate_pixels(lo, extent)
    p = torch.stack([xs, ys], -1).float()
    a, b = a[which], b[which]
    ab = b - a
    t = (((p - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp(min=1e-12)).clamp(0, 1)
    closest = a + t[:, None] * ab
    d = (closest - p).norm(dim=-1)
    pixel = ys * size + xs
    # The pixel a pixel's width across the edge from the closest point, on the other side from p.
    normal = torch.stack([-ab[:, 1], ab[:, 0]], -1).detach() / ab.detach().norm(dim=-1, keepdim=True).clamp(min=1e-12)
    side = torch.where(((p - a.detach()) * normal).sum(-1) >= 0, 1.0, -1.0)[:, None]
    mirror = (closest.detach() - side * normal).round().long()
    inside_view = ((mirror >= 0) & (mirror < size)).all(-1)
    mirror_covered = torch.where(inside_view, covered[(mirror[:, 1] * size + mirror[:, 0]).clamp(0, size * size - 1)],
                                 torch.zeros_like(inside_view))
    keep = (d.detach() < width / 2) & (mirror_covered != covered[pixel])
    d, pixel = d[keep], pixel[keep]
    nearest = torch.full((size * size,), torch.inf).scatter_reduce(0, pixel, d.detach(), "amin")
    first = d.detach() == nearest[pixel]
    sign = torch.where(covered[pixel[first]], 1.0, -1.0)
    return alpha.index_put((pixel[first],), (0.5 + sign * d[first] / width).clamp(0, 1))


def soft_render(v: torch.Tensor, f: torch.Tensor, albedo: torch.Tensor, c2w: torch.Tensor, fov_deg: float,
                size: int, light: torch.Tensor, face_pairs: torch.Tensor,
                edge_vertices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A lambertian render [size, size, 3] over white and its coverage [size, size] of a mesh (vertices v [V, 3],
    faces f [F, 3], per-vertex albedo [V, 3]), differentiable in v and albedo.

    Inside, the nearest face per pixel centre (the exporter's z-buffer, no gradient through the choice) is shaded
    with perspective-correct interpolated albedo and normals (gradient through both); the silhouette is antialiased
    (``silhouette_coverage``) over white, with the nearest covered colour just outside the covered pixels."""
    pix, depth = project(v, c2w, fov_deg, size)
    with torch.no_grad():
        face_map, _ = rasterize(v.detach(), f, c2w, fov_deg, size)
    face_map = face_map.view(-1)
    hit = (face_map >= 0).nonzero()[:, 0]
    corners = f[face_map[hit]]
    p = torch.stack([hit % size, hit // size], -1).float()
    tri = pix[corners]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    w = screen_weights(p, tri, e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) / depth[corners]
    bary = (w / w.sum(-1, keepdim=True))[..., None]
    vertex_normals, _ = vertex_and_face_normals(v, f)
    point = (bary * v[corners]).sum(1)
    normal = F.normalize((bary * vertex_normals[corners]).sum(1), dim=-1)
    color = lambertian((bary * albedo[corners]).sum(1), normal, F.normalize(light - point, dim=-1))
    fg = torch.zeros(size * size, 3).index_put((hit,), color)
    fg = torch.where((face_map >= 0)[:, None], fg, _nearest_fill(fg.detach(), face_map >= 0, size))
    alpha = silhouette_coverage(pix, f, face_map >= 0, face_pairs, edge_vertices, size)[:, None]
    return (alpha * fg + (1 - alpha)).view(size, size, 3), alpha.view(size, size)


def _nearest_fill(color: torch.Tensor, known: torch.Tensor, size: int) -> torch.Tensor:
    """color [size * size, 3] spread from known pixels into two rings of unknown ones (3x3 means)."""
    image = color.view(size, size, 3).permute(2, 0, 1)[None]
    mask = known.view(1, 1, size, size).float()
    for _ in range(2):
        total, count = F.avg_pool2d(image * mask, 3, 1, 1), F.avg_pool2d(mask, 3, 1, 1)
        image = torch.where(mask > 0, image, total / count.clamp(min=1e-6))
        mask = (count > 0).float()
    return image[0].permute(1, 2, 0).reshape(-1, 3)


def uniform_laplacian(num_vertices: int, edges: np.ndarray) -> sp.csr_matrix:
    """Graph Laplacian D - A [V, V] of a mesh's unique edges [E, 2] (trimesh's ``edges_unique``)."""
    adjacency = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(num_vertices,) * 2)
    adjacency = (adjacency + adjacency.T).astype(float)
    return (sp.diags(np.asarray(adjacency.sum(1)).ravel()) - adjacency).tocsr()


class SmoothSolve(torch.autograd.Function):
    """v = A^-1 u for the symmetric A = I + lam L (factored once): the large-steps parametrisation's map."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, factor) -> torch.Tensor:
        ctx.factor = factor
        return torch.from_numpy(factor.solve(u.detach().double().numpy())).to(u)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return torch.from_numpy(ctx.factor.solve(grad.double().numpy())).to(grad), None


def normal_total_variation(v: torch.Tensor, f: torch.Tensor, face_pairs: torch.Tensor,
                           edge_vertices: torch.Tensor) -> torch.Tensor:
    """Sum over interior edges of edge length x the angle between the two faces' normals (smoothed near 0 so the
    gradient stays finite)."""
    _, fn = vertex_and_face_normals(v, f)
    n1, n2 = fn[face_pairs[:, 0]], fn[face_pairs[:, 1]]
    angle = torch.atan2(torch.linalg.cross(n1, n2, dim=-1).norm(dim=-1), (n1 * n2).sum(-1))
    length = (v[edge_vertices[:, 0]] - v[edge_vertices[:, 1]]).norm(dim=-1)
    return (length * (angle.pow(2) + 1e-4).sqrt()).sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--faces", type=int, default=5000, help="decimate the exported mesh to this many faces first")
    parser.add_argument("--lam", type=float, default=20.0, help="the large-steps parametrisation's lambda")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--lr-albedo", type=float, default=0.02)
    parser.add_argument("--tv", type=float, default=50.0, help="weight of the normals' total variation")
    parser.add_argument("--t-max", type=float, default=None, help="upper end of the timestep range (default: the run's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the refined mesh (PLY, vertex colours)")
    args = parser.parse_args()

    import trimesh
    from scipy.spatial import cKDTree

    from sds.commands import open_run
    from sds.export.surface import decimate
    from sds.guidance.load import load_guidance
    from sds.schedule import plan
    from sds.train import sample_views

    run, cfg = open_run(args.run)
    center, scale = np.array(run.info.export["center"]), run.info.export["scale"]
    written = trimesh.load(args.run / "result" / "model.ply", force="mesh", process=False)
    world = written.vertices / scale + center
    mesh = trimesh.Trimesh(world, written.faces, process=True)
    if len(mesh.faces) > args.faces:
        mesh = decimate(mesh, args.faces)
    colors = (np.asarray(written.visual.vertex_colors)[:, :3] / 255.0)[cKDTree(world).query(mesh.vertices)[1]]
    _, color, shape = cfg.prompt.split()

    def scores(vertices: np.ndarray, albedo: np.ndarray) -> dict:
        out = trimesh.Trimesh((vertices - center) * scale, mesh.faces, process=False,
                              vertex_colors=(albedo * 255).round().astype(np.uint8))
        with tempfile.TemporaryDirectory() as folder:
            out.export(Path(folder) / "mesh.ply")
            s = score_mesh(Path(folder) / "mesh.ply", shape, color)
        s["correct"] = is_correct(dict(s, prompt=cfg.prompt, touches_bound=False))
        return {k: round(x, 3) if isinstance(x, float) else x for k, x in s.items()
                if k in ("class", "iou", "flat", "hausdorff", "delta_e", "genus", "components", "correct")}, out

    before, _ = scores(mesh.vertices, colors)
    torch.manual_seed(args.seed)
    f = torch.tensor(mesh.faces, dtype=torch.long)
    smooth = (sp.eye(len(mesh.vertices)) + args.lam * uniform_laplacian(len(mesh.vertices), mesh.edges_unique)).tocsc()
    factor = splu(smooth)
    u = torch.tensor(smooth @ mesh.vertices, dtype=torch.float32, requires_grad=True)
    logits = torch.logit(torch.tensor(colors, dtype=torch.float32).clamp(0.02, 0.98)).requires_grad_(True)
    face_pairs = torch.tensor(mesh.face_adjacency, dtype=torch.long)
    edge_vertices = torch.tensor(mesh.face_adjacency_edges, dtype=torch.long)
    optimizer = torch.optim.Adam([{"params": [u], "lr": args.lr}, {"params": [logits], "lr": args.lr_albedo}],
                                 betas=(0.9, 0.99))
    guidance, _ = load_guidance(cfg.guidance, cfg.prompt, torch.device("cpu"))
    p = plan(cfg, cfg.steps - 1)
    if args.t_max is not None:
        p = replace(p, t_range=(p.t_range[0], args.t_max))
    generator = torch.Generator().manual_seed(args.seed)
    size = cfg.render.resolution
    started = time.perf_counter()
    for _ in range(args.steps):
        cams, lights, labels = sample_views(cfg.camera, generator, "cpu")
        v = SmoothSolve.apply(u, factor)
        albedo = torch.sigmoid(logits)
        rgb = torch.stack([soft_render(v, f, albedo, cams.c2w[i].float(), float(cams.fov_deg[i]), size, lights[i],
                                       face_pairs, edge_vertices)[0] for i in range(len(cams))])
        loss = guidance(rgb, labels, p, generator).loss
        if args.tv:
            loss = loss + args.tv * normal_total_variation(v, f, face_pairs, edge_vertices)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    vertices = SmoothSolve.apply(u, factor).detach().double().numpy()
    after, refined = scores(vertices, torch.sigmoid(logits).detach().numpy())
    if args.out:
        refined.export(args.out)
    print(json.dumps({"prompt": cfg.prompt, "run": str(args.run), "faces": len(mesh.faces), "steps": args.steps,
                      "seconds": round(seconds, 1), "before": before, "after": after}))


if __name__ == "__main__":
    main()

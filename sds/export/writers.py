"""Writing a TexturedMesh as glTF binary (.glb), Wavefront OBJ (+ MTL + PNG) and a welded PLY.

Every file holds the same vertices, in glTF's axes (+Y up, +Z the front, right-handed; sds' world axes after
the export's normalisation): no per-format axis swaps. Viewers that assume +Z up (Blender's PLY importer) are
told how to import in docs/export.md. ``name`` (the prompt's slug) names the glTF node and mesh, the OBJ object
and the PLY's header comment.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from sds.export.texture import TexturedMesh, weld

MATERIAL_NAME = "albedo"
GL_ARRAY_BUFFER = 34962  # glTF bufferView.target for vertex attributes
GL_ELEMENT_ARRAY_BUFFER = 34963  # ... and for indices


def _texture_image(mesh: TexturedMesh) -> Image.Image:
    """The baked texture as a PIL image; PIL's PNG is sRGB by default, as glTF's baseColor expects."""
    return Image.fromarray(mesh.texture, mode="RGB")


def write_glb(mesh: TexturedMesh, path: Path, roughness: float, name: str = "model") -> None:
    """glTF 2.0 binary: positions, normals, TEXCOORD_0 and an embedded PNG baseColorTexture.

    The material is PBR metallic-roughness with metallic 0 and the given roughness. The albedo
    is already sRGB-encoded (the NeRF learns it against sRGB images), which is what glTF expects for
    baseColorTexture, so it is stored as is. No COLOR_0: glTF would multiply it with the texture.
    glTF is +Y up, right-handed, metres: the same axes as sds' world space, so nothing is swapped.
    """
    material = trimesh.visual.material.PBRMaterial(
        name=MATERIAL_NAME,
        baseColorTexture=_texture_image(mesh),
        baseColorFactor=[255, 255, 255, 255],
        metallicFactor=0.0,
        roughnessFactor=float(roughness),
        doubleSided=False,
    )
    visual = trimesh.visual.TextureVisuals(uv=mesh.uvs, material=material)
    # process=False: merging vertices would weld UV seams back together.
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_normals=mesh.normals, visual=visual, process=False)
    scene = trimesh.Scene()
    scene.add_geometry(tm, geom_name=name, node_name=name)  # glTF's mesh and node names
    data = trimesh.exchange.gltf.export_glb(scene, include_normals=True, tree_postprocessor=_set_buffer_view_targets)
    path.write_bytes(data)


def _set_buffer_view_targets(tree: dict) -> None:
    """Mark vertex/index bufferViews (trimesh leaves them unset; the validator hints at it)."""
    for gltf_mesh in tree.get("meshes", []):
        for primitive in gltf_mesh["primitives"]:
            for accessor in primitive["attributes"].values():
                tree["bufferViews"][tree["accessors"][accessor]["bufferView"]]["target"] = GL_ARRAY_BUFFER
            if "indices" in primitive:
                view = tree["accessors"][primitive["indices"]]["bufferView"]
                tree["bufferViews"][view]["target"] = GL_ELEMENT_ARRAY_BUFFER


def write_obj(
    mesh: TexturedMesh, obj_path: Path, name: str = "model", texture_name: str = "texture.png"
) -> tuple[Path, Path]:
    """OBJ + MTL (same stem) + PNG texture in obj_path's folder; returns (mtl_path, texture_path).

    Written by hand so the file names are fixed and every vertex carries v/vt/vn (1-based indices).
    """
    mtl_path = obj_path.with_suffix(".mtl")
    texture_path = obj_path.parent / texture_name
    _texture_image(mesh).save(texture_path, format="PNG")
    mtl_path.write_text(
        f"newmtl {MATERIAL_NAME}\nKa 0 0 0\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\nmap_Kd {texture_name}\n"
    )
    buf = io.StringIO()
    buf.write(f"# sds export: {name}; +Y up, +Z front\nmtllib {mtl_path.name}\no {name}\nusemtl {MATERIAL_NAME}\n")
    np.savetxt(buf, mesh.vertices, fmt="v %.6f %.6f %.6f")
    np.savetxt(buf, mesh.uvs, fmt="vt %.6f %.6f")
    np.savetxt(buf, mesh.normals, fmt="vn %.6f %.6f %.6f")
    idx = np.repeat(mesh.faces + 1, 3, axis=1)  # v/vt/vn share one index per corner
    np.savetxt(buf, idx, fmt="f %d/%d/%d %d/%d/%d %d/%d/%d")
    obj_path.write_text(buf.getvalue())
    return mtl_path, texture_path


def write_ply(mesh: TexturedMesh, path: Path, name: str = "model") -> None:
    """Binary PLY of the welded mesh (``texture.weld``: no seam copies, so watertight where the surface is closed)
    with per-vertex normals and sRGB colours (uint8 RGBA): what point-cloud and mesh tools (MeshLab, Open3D,
    CloudCompare, trimesh) read without a texture. The header's comments name the prompt and the axes."""
    vertices, faces, normals, colors = weld(mesh)
    vertex = np.empty(len(vertices), dtype=[(k, "<f4") for k in ("x", "y", "z", "nx", "ny", "nz")]
                      + [(k, "u1") for k in ("red", "green", "blue", "alpha")])
    for i, k in enumerate("xyz"):
        vertex[k], vertex["n" + k] = vertices[:, i], normals[:, i]
    for i, k in enumerate(("red", "green", "blue")):
        vertex[k] = colors[:, i]
    vertex["alpha"] = 255
    face = np.empty(len(faces), dtype=[("count", "u1"), ("corners", "<i4", (3,))])
    face["count"], face["corners"] = 3, faces
    header = [
        "ply", "format binary_little_endian 1.0", f"comment sds: {name}",
        "comment welded: one vertex per surface point; colours are sRGB",
        "comment axes: +Y up, +Z front, as model.glb (Blender: Import PLY, Forward Axis -Z, Up Axis Y)",
        f"element vertex {len(vertices)}",
        *(f"property float {k}" for k in ("x", "y", "z", "nx", "ny", "nz")),
        *(f"property uchar {k}" for k in ("red", "green", "blue", "alpha")),
        f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header",
    ]  # fmt: skip
    path.write_bytes("\n".join(header).encode("ascii") + b"\n" + vertex.tobytes() + face.tobytes())

"""The written files: glTF round trip, texture vs albedo, OBJ/PLY, preview, video, Khronos validation."""

from __future__ import annotations

import io

import imageio.v3 as iio
import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image

from sds.export import export_result
from sds.export.pipeline import ROUGHNESS, VIDEO_FRAMES
from sds.export.validate import validate_gltf

SEMI_AXES = (0.3, 0.6, 0.4)  # tallest along +Y, so "up" and "unit scale" are both visible in the extents
TEXTURE_SIZE = 256


@pytest.fixture(scope="module")
def exported(tmp_path_factory, fakes, make_config):
    """One full export (every format, video on, normalised) shared by this module's tests."""
    cfg = make_config(formats=("glb", "obj", "ply"), normalize=True, video=True, texture_size=TEXTURE_SIZE)
    out_dir = tmp_path_factory.mktemp("export") / "result"
    field = fakes.SdfField(fakes.ellipsoid_sdf(SEMI_AXES))
    return export_result(field, 1.0, fakes.sphere_render_fn(0.5), out_dir, cfg, show_progress=False)


def read_glb(path) -> tuple[dict[str, np.ndarray], np.ndarray, pygltflib.GLTF2]:
    """Raw glTF read (no trimesh): the primitive's attributes + indices, and the base colour image."""
    gltf = pygltflib.GLTF2().load(str(path))
    blob = gltf.binary_blob()
    dtypes = {5125: np.uint32, 5123: np.uint16, 5126: np.float32}
    widths = {"SCALAR": 1, "VEC2": 2, "VEC3": 3}

    def accessor(index: int) -> np.ndarray:
        acc = gltf.accessors[index]
        view = gltf.bufferViews[acc.bufferView]
        start = (view.byteOffset or 0) + (acc.byteOffset or 0)
        data = np.frombuffer(blob, dtypes[acc.componentType], acc.count * widths[acc.type], start)
        return data.reshape(acc.count, widths[acc.type])

    primitive = gltf.meshes[0].primitives[0]
    arrays = {
        name: accessor(getattr(primitive.attributes, name)) for name in ("POSITION", "NORMAL", "TEXCOORD_0")
    }
    arrays["indices"] = accessor(primitive.indices).reshape(-1, 3)
    image = gltf.images[gltf.textures[0].source]
    view = gltf.bufferViews[image.bufferView]
    png = blob[view.byteOffset : view.byteOffset + view.byteLength]
    return arrays, np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), gltf


def test_all_requested_files_exist(exported):
    names = {kind: path.name for kind, path in exported.files.items()}
    assert names == {
        "glb": "model.glb", "obj": "model.obj", "mtl": "model.mtl", "texture": "texture.png",
        "ply": "model.ply", "preview": "preview.png", "video": "turntable.mp4",
    }  # fmt: skip
    assert all(path.is_file() and path.parent == exported.out_dir for path in exported.files.values())
    assert sorted(p.name for p in exported.out_dir.parent.iterdir()) == ["result"]  # no staging left over


def test_glb_is_y_up_unit_box_and_centred(exported):
    mesh = trimesh.load(exported.files["glb"], force="mesh")
    assert mesh.extents.max() == pytest.approx(1.0, abs=1e-6)
    assert int(np.argmax(mesh.extents)) == 1  # the tall axis stays +Y: no axis swap
    np.testing.assert_allclose(mesh.extents, np.array(SEMI_AXES) / max(SEMI_AXES), rtol=0.03)
    np.testing.assert_allclose(mesh.bounds.mean(0), 0.0, atol=1e-6)
    assert exported.scale == pytest.approx(1 / (2 * max(SEMI_AXES)), rel=0.02)


def test_glb_round_trips_through_trimesh(exported):
    mesh = trimesh.load(exported.files["glb"], force="mesh")
    material = mesh.visual.material
    assert len(mesh.vertices) == exported.num_vertices
    assert len(mesh.faces) == exported.faces_after_cleanup
    assert material.baseColorTexture.size == (TEXTURE_SIZE, TEXTURE_SIZE)
    assert material.metallicFactor == 0.0 and material.roughnessFactor == pytest.approx(ROUGHNESS)
    texture_png = np.asarray(Image.open(exported.files["texture"]).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(material.baseColorTexture.convert("RGB")), texture_png)
    normals = np.linalg.norm(mesh.vertex_normals, axis=1)
    np.testing.assert_allclose(normals, 1.0, atol=1e-4)


def test_texture_at_surface_uv_matches_albedo(exported, fakes):
    arrays, image, _ = read_glb(exported.files["glb"])
    faces, positions, uvs = arrays["indices"], arrays["POSITION"], arrays["TEXCOORD_0"]
    centroid_y = positions[faces].mean(1)[:, 1]
    centroid_uv = uvs[faces].mean(1)  # glTF UV: origin at the image's top-left
    texel = np.clip((centroid_uv * TEXTURE_SIZE).astype(int), 0, TEXTURE_SIZE - 1)
    colors = image[texel[:, 1], texel[:, 0]] / 255.0
    for side, expected in ((centroid_y > 0.05, fakes.RED), (centroid_y < -0.05, fakes.BLUE)):
        assert side.sum() > 100
        np.testing.assert_allclose(np.median(colors[side], axis=0), expected, atol=0.02)
        assert (np.abs(colors[side] - expected).max(1) < 0.1).mean() > 0.99


def test_ply_vertex_colours_follow_the_albedo(exported, fakes):
    mesh = trimesh.load(exported.files["ply"], process=False)
    colors = mesh.visual.vertex_colors[:, :3] / 255.0
    y = mesh.vertices[:, 1]
    np.testing.assert_allclose(colors[y > 0.01], np.broadcast_to(fakes.RED, colors[y > 0.01].shape))
    np.testing.assert_allclose(colors[y < -0.01], np.broadcast_to(fakes.BLUE, colors[y < -0.01].shape))


def test_obj_references_its_material_and_texture(exported):
    assert "mtllib model.mtl" in exported.files["obj"].read_text()
    assert "map_Kd texture.png" in exported.files["mtl"].read_text()
    mesh = trimesh.load(exported.files["obj"], force="mesh", process=False)
    assert len(mesh.vertices) == exported.num_vertices
    assert mesh.visual.material.image.size == (TEXTURE_SIZE, TEXTURE_SIZE)


def test_preview_and_turntable(exported, make_config):
    cfg = make_config()
    preview = iio.imread(exported.files["preview"])
    assert preview.shape == (2 * cfg.preview_resolution, 2 * cfg.preview_resolution, 3)
    frames = np.stack(list(iio.imiter(exported.files["video"], plugin="FFMPEG")))
    assert frames.shape[0] == VIDEO_FRAMES
    assert frames.shape[1:3] == (cfg.preview_resolution, cfg.preview_resolution)  # the preview's size sizes it


def test_glb_passes_the_khronos_validator(exported, node_or_skip):
    report = validate_gltf(exported.files["glb"])
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]
    assert report["issues"]["numWarnings"] == 0, report["issues"]["messages"]


def test_decimated_glb_with_odd_texture_passes_the_validator(
    tmp_path, fakes, make_config, node_or_skip
):
    cfg = make_config(max_faces=500, texture_size=100, normalize=True)
    field = fakes.SdfField(fakes.box_sdf((0.4, 0.25, 0.3)))
    out = export_result(field, 1.0, fakes.sphere_render_fn(0.3), tmp_path / "r", cfg, show_progress=False)
    assert out.faces_after_cleanup <= 500
    report = validate_gltf(out.files["glb"])
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]

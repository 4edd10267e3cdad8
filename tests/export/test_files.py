"""The written files: glTF round trip, texture vs albedo, OBJ/PLY (welded, named, axes), preview (mesh and NeRF
rows), video of the mesh, Khronos validation."""

from __future__ import annotations

import io

import imageio.v3 as iio
import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image

from sds.export import export_result
from sds.export.media import PREVIEW_VIEWS, label_height, preview_view
from sds.export.pipeline import ROUGHNESS, VIDEO_FRAMES
from sds.export.raster import read_glb
from sds.export.validate import validate_gltf

SEMI_AXES = (0.3, 0.6, 0.4)  # tallest along +Y, so "up" and "unit scale" are both visible in the extents
TEXTURE_SIZE = 256
NAME = "an-ellipsoid"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, fakes, make_config):
    """One full export (every format, video on, normalised) shared by this module's tests."""
    # The default grid (128^3): at 48^3 the normal filter pulls this ellipsoid's tips in by 2 % (0.5 % at 128^3).
    cfg = make_config(formats=("glb", "obj", "ply"), normalize=True, video=True, texture_size=TEXTURE_SIZE, resolution=128)
    out_dir = tmp_path_factory.mktemp("export") / "result"
    field = fakes.SdfField(fakes.ellipsoid_sdf(SEMI_AXES))
    return export_result(field, 1.0, fakes.sphere_render_fn(0.5), out_dir, cfg, show_progress=False, name=NAME)


def read_glb_raw(path) -> tuple[dict[str, np.ndarray], np.ndarray, pygltflib.GLTF2]:
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
    arrays, image, _ = read_glb_raw(exported.files["glb"])
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


def test_ply_is_welded_watertight_and_in_the_glbs_axes(exported):
    ply = trimesh.load(exported.files["ply"], process=False)  # no merge: the file itself is welded
    glb = trimesh.load(exported.files["glb"], force="mesh", process=False)
    assert ply.is_watertight and ply.euler_number == 2 and exported.watertight  # one closed genus-0 surface
    assert len(ply.vertices) < len(glb.vertices) and len(ply.faces) == len(glb.faces)  # the seams' copies are gone
    np.testing.assert_allclose(ply.bounds, glb.bounds, atol=1e-6)  # +Y up like the glb: no axis swap
    np.testing.assert_allclose(np.linalg.norm(ply.vertex_normals, axis=1), 1.0, atol=1e-4)


def test_files_are_named_after_the_prompt(exported):
    _, _, gltf = read_glb_raw(exported.files["glb"])
    assert [node.name for node in gltf.nodes] == [NAME] and gltf.meshes[0].name == NAME
    assert f"\no {NAME}\n" in exported.files["obj"].read_text()
    header = exported.files["ply"].read_bytes().split(b"end_header")[0].decode("ascii")
    assert f"comment sds: {NAME}" in header and "Up Axis Y" in header


def test_obj_references_its_material_and_texture(exported):
    assert "mtllib model.mtl" in exported.files["obj"].read_text()
    assert "map_Kd texture.png" in exported.files["mtl"].read_text()
    mesh = trimesh.load(exported.files["obj"], force="mesh", process=False)
    assert len(mesh.vertices) == exported.num_vertices
    assert mesh.visual.material.image.size == (TEXTURE_SIZE, TEXTURE_SIZE)


def preview_rows(path) -> tuple[np.ndarray, np.ndarray]:
    """preview.png -> (mesh views [4, R, R, 3], NeRF views [4, R, R, 3])."""
    image = iio.imread(path)
    return tuple(np.stack([preview_view(image, row, v) for v in range(PREVIEW_VIEWS)]) for row in (0, 1))


def test_preview_has_a_mesh_row_and_a_nerf_row(exported, make_config):
    res = make_config().preview_resolution
    preview = iio.imread(exported.files["preview"])
    assert preview.shape == (2 * (label_height(res) + res), PREVIEW_VIEWS * res, 3)
    mesh, nerf = preview_rows(exported.files["preview"])
    band = label_height(res)
    assert (preview[:band] < 100).any() and (preview[band + res : 2 * band + res] < 100).any()  # both labels
    # The field is an ellipsoid (0.3 x 0.6 x 0.4), the fake NeRF render a ball of radius 0.5: the rows differ,
    # and the mesh row has the ellipsoid's outline (taller than wide from the front).
    mesh_fg, nerf_fg = (views.min(-1) < 200 for views in (mesh, nerf))
    assert (mesh_fg != nerf_fg).mean() > 0.05
    rows, cols = np.nonzero(mesh_fg[0])
    height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
    assert height / width == pytest.approx(0.6 / 0.3, rel=0.15)


def test_turntable_shows_the_mesh(exported, make_config):
    res = make_config().preview_resolution
    frames = np.stack(list(iio.imiter(exported.files["video"], plugin="FFMPEG")))
    assert frames.shape == (VIDEO_FRAMES, res, res, 3)  # the preview's size sizes it
    mesh, nerf = preview_rows(exported.files["preview"])
    first = frames[0].min(-1) < 200  # azimuth 0: the preview's front view
    iou = lambda a, b: (a & b).sum() / (a | b).sum()  # noqa: E731
    assert iou(first, mesh[0].min(-1) < 200) > 0.9 > iou(first, nerf[0].min(-1) < 200)


def test_glb_read_back_sits_where_the_nerf_is(exported):
    """center and scale undo the normalisation: the glb's vertices land on the field's surface in world units."""
    world = read_glb(exported.files["glb"], exported.center, exported.scale).vertices.double().numpy()
    np.testing.assert_allclose(world.max(0) - world.min(0), 2 * np.array(SEMI_AXES), rtol=0.03)
    np.testing.assert_allclose((world.max(0) + world.min(0)) / 2, 0.0, atol=0.01)


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

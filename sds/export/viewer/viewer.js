"use strict";
// Offline viewer for sds exports: parses a .glb (first mesh's first primitive: POSITION, NORMAL,
// TEXCOORD_0, indices, embedded baseColorTexture; tightly packed buffer views, as sds writes them)
// and draws it with WebGL. Drag to orbit, wheel or pinch to zoom, double-click to reset.

const GLB_MAGIC = 0x46546c67; // "glTF"
const CHUNK_JSON = 0x4e4f534a;
const CHUNK_BIN = 0x004e4942;
const COMPONENTS = { SCALAR: 1, VEC2: 2, VEC3: 3, VEC4: 4 };
const ARRAY_TYPES = { 5121: Uint8Array, 5123: Uint16Array, 5125: Uint32Array, 5126: Float32Array };

function parseGlb(bytes) {
  const data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (data.getUint32(0, true) !== GLB_MAGIC) throw new Error("not a binary glTF (.glb) file");
  let json = null;
  let bin = null;
  for (let offset = 12; offset + 8 <= data.byteLength; ) {
    const length = data.getUint32(offset, true);
    const type = data.getUint32(offset + 4, true);
    const chunk = bytes.subarray(offset + 8, offset + 8 + length);
    if (type === CHUNK_JSON) json = JSON.parse(new TextDecoder().decode(chunk));
    if (type === CHUNK_BIN) bin = chunk;
    offset += 8 + length;
  }
  const viewBytes = (index) => {
    const view = json.bufferViews[index];
    const start = view.byteOffset || 0;
    return bin.subarray(start, start + view.byteLength);
  };
  const accessor = (index) => {
    if (index === undefined) return null;
    const acc = json.accessors[index];
    const Type = ARRAY_TYPES[acc.componentType];
    const count = acc.count * COMPONENTS[acc.type];
    const start = acc.byteOffset || 0;
    // slice() copies, so the typed array is aligned whatever the chunk's offset.
    const copy = viewBytes(acc.bufferView).slice(start, start + count * Type.BYTES_PER_ELEMENT);
    return { array: new Type(copy.buffer), min: acc.min, max: acc.max };
  };
  const primitive = json.meshes[0].primitives[0];
  const position = accessor(primitive.attributes.POSITION);
  const mesh = {
    positions: position.array,
    min: position.min,
    max: position.max,
    normals: accessor(primitive.attributes.NORMAL)?.array ?? null,
    uvs: accessor(primitive.attributes.TEXCOORD_0)?.array ?? null,
    indices: accessor(primitive.indices)?.array ?? null,
    image: null,
  };
  const material = json.materials?.[primitive.material];
  const textureRef = material?.pbrMetallicRoughness?.baseColorTexture;
  if (textureRef !== undefined) {
    const image = json.images[json.textures[textureRef.index].source];
    mesh.image = { bytes: viewBytes(image.bufferView), mimeType: image.mimeType };
  }
  return mesh;
}

const VERTEX_SHADER = `
attribute vec3 position; attribute vec3 normal; attribute vec2 uv;
uniform mat4 viewProjection; varying vec3 vNormal; varying vec2 vUv;
void main() { vNormal = normal; vUv = uv; gl_Position = viewProjection * vec4(position, 1.0); }`;
const FRAGMENT_SHADER = `
precision mediump float;
uniform sampler2D baseColor; uniform vec3 lightDir; uniform bool hasTexture;
varying vec3 vNormal; varying vec2 vUv;
void main() {
  vec3 albedo = hasTexture ? texture2D(baseColor, vUv).rgb : vec3(0.8);
  float diffuse = max(dot(normalize(vNormal), lightDir), 0.0);
  gl_FragColor = vec4(albedo * (0.45 + 0.55 * diffuse), 1.0);
}`;

function compileProgram(gl) {
  const program = gl.createProgram();
  for (const [type, source] of [[gl.VERTEX_SHADER, VERTEX_SHADER], [gl.FRAGMENT_SHADER, FRAGMENT_SHADER]]) {
    const shader = gl.createShader(type);
    gl.shaderSource(shader, source);
    gl.compileShader(shader);
    if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
    gl.attachShader(program, shader);
  }
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
  return program;
}

function bindAttribute(gl, program, name, array, size) {
  const location = gl.getAttribLocation(program, name);
  if (location < 0) return;
  if (array === null) { gl.disableVertexAttribArray(location); gl.vertexAttrib3f(location, 0, 1, 0); return; }
  gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
  gl.bufferData(gl.ARRAY_BUFFER, array, gl.STATIC_DRAW);
  gl.enableVertexAttribArray(location);
  gl.vertexAttribPointer(location, size, gl.FLOAT, false, 0, 0);
}

function uploadTexture(gl, image, onReady) {
  const blob = new Blob([image.bytes], { type: image.mimeType });
  createImageBitmap(blob).then((bitmap) => {
    gl.bindTexture(gl.TEXTURE_2D, gl.createTexture());
    // glTF's UV origin is the image's top-left, which is also where WebGL starts reading rows: no flip.
    gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB, gl.RGB, gl.UNSIGNED_BYTE, bitmap);
    const powerOfTwo = (n) => (n & (n - 1)) === 0;
    const mips = powerOfTwo(bitmap.width) && powerOfTwo(bitmap.height);
    if (mips) gl.generateMipmap(gl.TEXTURE_2D);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, mips ? gl.LINEAR_MIPMAP_LINEAR : gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
    onReady();
  });
}

function viewProjectionMatrix(aspect, yaw, pitch, distance, center) {
  // Perspective (fov 40 deg) times a look-at from an orbit around `center`, +Y up; column-major.
  const f = 1 / Math.tan((40 * Math.PI) / 360);
  const near = distance / 100;
  const far = distance * 10;
  const eye = [Math.cos(pitch) * Math.sin(yaw), Math.sin(pitch), Math.cos(pitch) * Math.cos(yaw)];
  const z = eye; // unit vector from center to camera
  const xLen = Math.hypot(z[2], z[0]);
  const x = [z[2] / xLen, 0, -z[0] / xLen]; // up x z, with up = +Y
  const y = [z[1] * x[2] - z[2] * x[1], z[2] * x[0] - z[0] * x[2], z[0] * x[1] - z[1] * x[0]];
  const p = center.map((c, i) => c + distance * eye[i]);
  const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  const view = [x[0], y[0], z[0], 0, x[1], y[1], z[1], 0, x[2], y[2], z[2], 0, -dot(x, p), -dot(y, p), -dot(z, p), 1];
  const a = (far + near) / (near - far);
  const b = (2 * far * near) / (near - far);
  const out = new Float32Array(16);
  for (let col = 0; col < 4; col++) {
    const [vx, vy, vz] = [view[col * 4], view[col * 4 + 1], view[col * 4 + 2]];
    out.set([(f / aspect) * vx, f * vy, a * vz + b * view[col * 4 + 3], -vz], col * 4);
  }
  return out;
}

function startViewer(canvas, mesh) {
  const gl = canvas.getContext("webgl");
  if (!gl) throw new Error("WebGL is not available in this browser");
  if (mesh.indices instanceof Uint32Array && !gl.getExtension("OES_element_index_uint")) {
    throw new Error("this browser cannot draw 32-bit indices");
  }
  const program = compileProgram(gl);
  gl.useProgram(program);
  bindAttribute(gl, program, "position", mesh.positions, 3);
  bindAttribute(gl, program, "normal", mesh.normals, 3);
  bindAttribute(gl, program, "uv", mesh.uvs, 2);
  gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, gl.createBuffer());
  gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, mesh.indices, gl.STATIC_DRAW);
  const indexType = mesh.indices instanceof Uint32Array ? gl.UNSIGNED_INT : gl.UNSIGNED_SHORT;
  const center = mesh.min.map((lo, i) => (lo + mesh.max[i]) / 2);
  const radius = Math.hypot(...mesh.min.map((lo, i) => mesh.max[i] - lo)) / 2 || 1;
  const home = { yaw: 0.6, pitch: 0.35, distance: 3.2 * radius };
  const state = { ...home, hasTexture: false };
  const uniform = (name) => gl.getUniformLocation(program, name);

  function draw() {
    const dpr = window.devicePixelRatio || 1;
    canvas.width = canvas.clientWidth * dpr;
    canvas.height = canvas.clientHeight * dpr;
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(0.96, 0.96, 0.96, 1);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.enable(gl.DEPTH_TEST);
    gl.enable(gl.CULL_FACE);
    const vp = viewProjectionMatrix(canvas.width / canvas.height, state.yaw, state.pitch, state.distance, center);
    gl.uniformMatrix4fv(uniform("viewProjection"), false, vp);
    const c = Math.cos(state.pitch);
    gl.uniform3f(uniform("lightDir"), c * Math.sin(state.yaw), Math.sin(state.pitch), c * Math.cos(state.yaw));
    gl.uniform1i(uniform("hasTexture"), state.hasTexture);
    gl.drawElements(gl.TRIANGLES, mesh.indices.length, indexType, 0);
  }
  const redraw = () => requestAnimationFrame(draw);
  if (mesh.image) uploadTexture(gl, mesh.image, () => { state.hasTexture = true; redraw(); });

  let drag = null;
  canvas.addEventListener("pointerdown", (e) => { drag = { x: e.clientX, y: e.clientY }; canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener("pointerup", () => { drag = null; });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    state.yaw -= (e.clientX - drag.x) * 0.01;
    state.pitch = Math.max(-1.5, Math.min(1.5, state.pitch + (e.clientY - drag.y) * 0.01));
    drag = { x: e.clientX, y: e.clientY };
    redraw();
  });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    state.distance = Math.max(radius * 1.05, state.distance * Math.exp(e.deltaY * 0.001));
    redraw();
  }, { passive: false });
  canvas.addEventListener("dblclick", () => { Object.assign(state, home); redraw(); });
  window.addEventListener("resize", redraw);
  redraw();
}

function base64ToBytes(text) {
  const binary = atob(text.trim());
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

if (typeof document !== "undefined") {
  window.addEventListener("load", () => {
    const info = document.getElementById("info");
    try {
      startViewer(document.getElementById("view"), parseGlb(base64ToBytes(document.getElementById("glb").textContent)));
    } catch (err) {
      info.textContent = "cannot show the model: " + err.message;
    }
  });
}
if (typeof module !== "undefined") module.exports = { parseGlb, viewProjectionMatrix };

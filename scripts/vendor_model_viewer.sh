#!/usr/bin/env bash
# Vendor Google's <model-viewer> web component into sds/export/viewer/ (used by `sds view`).
# Takes the single-file minified ES module build (dist/model-viewer.min.js, three.js included) and its LICENSE
# from the npm registry, and records the version and checksums in sds/export/viewer/README.md.
# To update: bash scripts/vendor_model_viewer.sh 4.5.0, set MODEL_VIEWER_VERSION in sds/export/viewer.py,
# run tests/export/test_viewer.py (it opens the page in headless Chromium) and commit the three files.
set -euo pipefail
VERSION="${1:-4.4.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${ROOT}/sds/export/viewer"
WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT

(cd "${WORK}" && npm pack --silent "@google/model-viewer@${VERSION}" >/dev/null && tar xzf ./*.tgz)
cp "${WORK}/package/dist/model-viewer.min.js" "${DEST}/model-viewer.min.js"
cp "${WORK}/package/LICENSE" "${DEST}/LICENSE"
INTEGRITY="$(npm view "@google/model-viewer@${VERSION}" dist.integrity)"
SHA256="$(sha256sum "${DEST}/model-viewer.min.js" | cut -d' ' -f1)"
cat > "${DEST}/README.md" <<EOF
# Vendored: Google's \`<model-viewer>\`

- package: \`@google/model-viewer\` version ${VERSION} (npm registry), Apache-2.0 (\`LICENSE\` here)
- file: \`dist/model-viewer.min.js\` of the package, unchanged: one ES module with three.js, lit and its other
  dependencies bundled; their licence notices (three.js MIT, lit BSD-3-Clause, ...) are the \`@license\`
  comments kept inside the file
- tarball integrity: \`${INTEGRITY}\`
- sha256 of model-viewer.min.js: \`${SHA256}\`

\`sds view\` (\`sds/export/viewer.py\`) inlines this file and the run's glb into one offline HTML page.
Updated with \`bash scripts/vendor_model_viewer.sh VERSION\`; \`tests/export/test_viewer.py\` checks the
checksum above and renders a page in headless Chromium.
EOF
echo "vendored @google/model-viewer ${VERSION} into ${DEST}"

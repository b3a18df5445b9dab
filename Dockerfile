# syntax=docker/dockerfile:1
# One image for every dptune Kubeflow component and for the `dptune` CLI.
#
#   docker build -t ghcr.io/<org>/dptune:0.1.0 .                                  # CUDA torch
#   docker build --build-arg TORCH_VARIANT=cpu -t ghcr.io/<org>/dptune:0.1.0-cpu .
#
# Every Python dependency, kfp included, is installed at the exact version pyproject.toml pins;
# the pipeline YAML must be compiled with that same kfp (tests/kubeflow/test_dockerfile.py checks).
# See docs/kubeflow.md.

# Python 3.11 slim (Debian bookworm), pinned by tag and by the digest of its multi-arch index.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE}

# cu128: a CUDA 12.8 build of torch for GPU nodes (the driver comes from the node);
# cpu: the CPU-only build, a much smaller image for CPU-only clusters and CI.
ARG TORCH_VARIANT=cu128
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/dptune \
    HF_HOME=/home/dptune/.cache/huggingface \
    MPLCONFIGDIR=/home/dptune/.cache/matplotlib

RUN groupadd --gid 1000 dptune \
    && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/dptune dptune

WORKDIR /opt/dptune

# Dependencies first, in their own layers, so that a change of the source alone reuses them.
# torch comes from the PyTorch index of the chosen variant, at the version pyproject.toml pins
# (`torch==X` accepts X+cu128 and X+cpu); every other pin then installs from PyPI.
COPY pyproject.toml ./
RUN python -c "import tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print(chr(10).join(project['dependencies']))" > /tmp/requirements.txt
RUN pip install --index-url "${TORCH_INDEX_URL}" "$(grep '^torch==' /tmp/requirements.txt)" \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project itself; its dependencies are already in place.
COPY README.md ./
COPY src ./src
RUN pip install --no-deps . \
    && rm -rf /opt/dptune/build /opt/dptune/src/*.egg-info \
    && python -c "import dptune, kfp, torch; print('dptune', dptune.__version__, 'kfp', kfp.__version__, 'torch', torch.__version__)"

# Kubeflow runs every component as this user; KFP 2.1+ mounts its artifact folders (/gcs,
# /minio, /s3) as emptyDir volumes, so nothing needs root.
USER 1000:1000
WORKDIR /home/dptune

# Kubeflow overrides the entrypoint with the component's own command; `docker run IMAGE ...`
# runs the CLI.
ENTRYPOINT ["dptune"]
CMD ["--help"]

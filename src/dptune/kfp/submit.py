"""Submitting a compiled pipeline to a connected backend (`dptune.kfp.connection`): a run of
the package itself, or of a pipeline version uploaded now; both in a KFP experiment.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dptune.errors import DptuneError
from dptune.kfp.connection import Backend, explain_failure, quiet
from dptune.kfp.pipeline import PIPELINE_DESCRIPTION, PIPELINE_NAME


def submit(
    backend: Backend,
    package: str | Path,
    arguments: Mapping[str, Any],
    experiment: str,
    run_name: str | None = None,
    pipeline_name: str | None = None,
    pipeline_version: str | None = None,
) -> dict[str, str]:
    """Create a run of the compiled `package` in `experiment`: from the package itself, or,
    with `pipeline_name`, from a pipeline version uploaded now (a new pipeline when there is
    none of that name). Return the run's id and UI link (and the pipeline version's)."""
    client, ns = backend.client, backend.namespace
    run_name = run_name or default_run_name()
    result: dict[str, str] = {}
    doing = "uploading the pipeline"
    try:
        with quiet():
            if pipeline_name:
                pipeline_id = _pipeline_id(client, pipeline_name, ns)
                if pipeline_id is None:  # a new pipeline: its first version is this package
                    pipeline = client.upload_pipeline(
                        str(package), pipeline_name=pipeline_name,
                        description=PIPELINE_DESCRIPTION, namespace=ns,
                    )  # fmt: skip
                    pipeline_id = pipeline.pipeline_id
                    listed = client.list_pipeline_versions(
                        pipeline_id, page_size=1, sort_by="created_at desc"
                    )
                    version = (listed.pipeline_versions or [None])[0]
                    if version is None:
                        raise DptuneError(
                            f"--pipeline-name: {pipeline_name}: uploaded, but it has no version"
                        )
                else:
                    version = client.upload_pipeline_version(
                        str(package),
                        pipeline_version_name=pipeline_version or default_version_name(),
                        pipeline_id=pipeline_id,
                        description=PIPELINE_DESCRIPTION,
                    )
                result.update(
                    pipeline_id=str(pipeline_id),
                    pipeline_version_id=str(version.pipeline_version_id),
                    pipeline_version=str(version.display_name),
                )
                doing = "creating the experiment"
                exp = client.create_experiment(name=experiment, namespace=ns)
                doing = "creating the run"
                run = client.run_pipeline(
                    experiment_id=exp.experiment_id, job_name=run_name, params=dict(arguments),
                    pipeline_id=pipeline_id, version_id=version.pipeline_version_id,
                )  # fmt: skip
                run_id = str(run.run_id)
            else:
                doing = "creating the run"
                created = client.create_run_from_pipeline_package(
                    str(package), arguments=dict(arguments), run_name=run_name,
                    experiment_name=experiment, namespace=ns,
                )  # fmt: skip
                run_id = str(created.run_id)
            url = f"{client._get_url_prefix()}/#/runs/details/{run_id}"  # the client's own link
    except DptuneError:
        raise
    except Exception as err:  # kfp_server_api.ApiException, urllib3 and auth errors
        raise explain_failure(err, backend.connection, doing) from None
    return {"run_id": run_id, "url": url, "run_name": run_name, **result}


def _pipeline_id(client: Any, name: str, namespace: str | None) -> str | None:
    """The id of the pipeline named `name` in `namespace` (the client's `get_pipeline_id`
    searches without a namespace, so it misses namespaced pipelines of a multi-user backend)."""
    flt = json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
    )
    found = client.list_pipelines(filter=flt, namespace=namespace).pipelines or []
    if len(found) > 1:
        raise DptuneError(f"--pipeline-name: {len(found)} pipelines are named {name}")
    return found[0].pipeline_id if found else None


def default_run_name(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    return f"{PIPELINE_NAME} {now:%Y-%m-%d %H:%M:%S}"


def default_version_name(now: datetime.datetime | None = None) -> str:
    from dptune import __version__

    now = now or datetime.datetime.now(datetime.UTC)
    return f"{__version__}-{now:%Y%m%d-%H%M%S}"


def package_images(package: str | Path) -> set[str]:
    """The container images of a compiled pipeline package."""
    import yaml

    try:
        spec = next(yaml.safe_load_all(Path(package).read_text(encoding="utf-8")))
        executors = spec["deploymentSpec"]["executors"]
        return {e["container"]["image"] for e in executors.values() if "container" in e}
    except (OSError, yaml.YAMLError, KeyError, TypeError, StopIteration) as err:
        raise DptuneError(f"--package: {package}: not a compiled pipeline ({err})") from None

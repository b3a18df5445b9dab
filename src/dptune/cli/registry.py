"""`dptune promote` (move the `champion` alias in the MLflow model registry) and `dptune serve`
(serve a registered prompt over HTTP with `mlflow models serve`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

MARGIN = 0.04  # tracking.promotion.MARGIN (the CLI imports no MLflow before it runs)

PROMOTE_HELP = (
    "Promote the best (or a given) registered prompt version to alias `champion`."
    "\n\n"
    "The candidate is --version, or the version with the highest dev --metric (default: the "
    "task's primary metric, e.g. accuracy -> dev_accuracy; never a test metric) as its "
    "training run logged it (tags are labels, not evidence), among those comparable with the "
    "champion (same task, backbone, protocol, text format and data). It becomes champion only "
    "if it beats the current champion by more than --margin, its code is this dptune's own "
    "and it loads and predicts its input example; a best version that does not serve is "
    "skipped (tag promotion_skipped) for the next. The reason is recorded in the versions' "
    "tags (promoted_because, promotion_declined, promotion_margin, previous_champion, ...). "
    "Runs go to MLFLOW_TRACKING_URI, else sqlite:///<root>/mlflow.db."
    "\n\n"
    "Exit codes: 0 whether or not the champion moved (one summary line on stdout); 2 for an "
    "unknown model, version or metric, a --version that cannot be promoted, no candidate that "
    "serves, or an unreachable tracking server; 143 on SIGTERM (the lock is released)."
)


def promote(
    model: Annotated[str, typer.Option(help="Registered model, e.g. dptune-cb-minilm")],
    metric: Annotated[
        str | None,
        typer.Option(help="Dev metric to compare: accuracy (= dev_accuracy), f1_macro, ..."),
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="Promote this version (if it beats the champion)")
    ] = None,
    margin: Annotated[
        float, typer.Option(help="Dev advantage the candidate needs over the champion")
    ] = MARGIN,
    root: Annotated[
        Path, typer.Option(help="Project folder holding mlflow.db (without MLFLOW_TRACKING_URI)")
    ] = Path("."),
) -> None:
    from dptune.tracking import check_tracking_server, configure
    from dptune.tracking import promote as promote_version

    check_tracking_server(configure(root), must_exist=True)
    print(promote_version(model, metric=metric, version=version, margin=margin).summary)


promote.__doc__ = PROMOTE_HELP


SERVE_HELP = (
    "Serve a registered prompt over HTTP: MLflow's scoring server for models:/<model>@<alias> "
    "(what `mlflow models serve --env-manager local` runs) in this environment, behind a "
    "body-size limit, after checking the model, alias (or version) and "
    'its signature. POST {"dataframe_records": [...]} or {"inputs": ...} to /invocations; '
    "a record that lacks a field or has one of the wrong type gets HTTP 400 naming it."
    "\n\n"
    "Limits: a request over --max-rows records or --max-bytes bytes of field values gets HTTP "
    "413 naming the limit (also DPTUNE_SERVE_MAX_ROWS, DPTUNE_SERVE_MAX_BYTES; defaults 1000 "
    "and 1000000), and so does a body over --max-body-bytes (DPTUNE_SERVE_MAX_BODY_BYTES), "
    "declared or streamed, before it is read into memory; one past --timeout seconds gets "
    "504 and its prediction stops (also "
    "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT, default 60). Texts are cut to the model's input "
    "as in training, and nothing from a request is written to disk."
    "\n\n"
    "Exit codes: the server's; 2 for an unknown model or version, an alias that is not set, a "
    "version without a signature, or an unreachable tracking server."
)


def serve(
    model: Annotated[str, typer.Option(help="Registered model, e.g. dptune-cb-minilm")],
    alias: Annotated[str, typer.Option(help="Alias to serve")] = "champion",
    version: Annotated[str | None, typer.Option(help="Serve this version instead")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 5001,
    max_rows: Annotated[
        int | None, typer.Option(min=1, help="Records per request (DPTUNE_SERVE_MAX_ROWS)")
    ] = None,
    max_bytes: Annotated[
        int | None,
        typer.Option(min=1, help="Bytes of field values per request (DPTUNE_SERVE_MAX_BYTES)"),
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Bytes of HTTP body per request (DPTUNE_SERVE_MAX_BODY_BYTES; default 4 x "
            "--max-bytes)",
        ),
    ] = None,
    timeout: Annotated[
        int | None,
        typer.Option(min=1, help="Seconds per request (MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT)"),
    ] = None,
    root: Annotated[
        Path, typer.Option(help="Project folder holding mlflow.db (without MLFLOW_TRACKING_URI)")
    ] = Path("."),
) -> None:
    from dptune.tracking import check_tracking_server, configure, servable_uri
    from dptune.tracking import serving_limits as limits
    from dptune.tracking.serving_app import serve_command

    settings = {limits.MAX_ROWS_ENV: max_rows, limits.MAX_BYTES_ENV: max_bytes,
                limits.MAX_BODY_BYTES_ENV: max_body_bytes,
                limits.TIMEOUT_ENV: timeout}  # fmt: skip
    os.environ.update({k: str(v) for k, v in settings.items() if v is not None})
    # a bad setting is one line now, not a dead server
    limits.max_rows(), limits.max_bytes(), limits.max_body_bytes()
    uri = configure(root)
    check_tracking_server(uri, must_exist=True)
    model_uri = servable_uri(model, alias=alias, version=version)
    command, env = serve_command(model_uri, host, port)
    env["MLFLOW_TRACKING_URI"] = uri
    print(f"serving {model_uri} on http://{host}:{port}/invocations", file=sys.stderr, flush=True)
    os.execve(command[0], command, env)  # the server takes over this process (and its signals)


serve.__doc__ = SERVE_HELP

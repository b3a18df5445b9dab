"""One promotion at a time per registered model, across processes and machines, through the
MLflow registry itself.

MLflow has no conditional update, but creating a registered model is atomic: the store refuses
a second one of the same name (RESOURCE_ALREADY_EXISTS, a unique key in the SQL store, the same
over HTTP). So the lock is a registered model `<model>.promotion-lock`: whoever creates it holds
it, and deletes it when done; the others wait. A lock older than `LEASE_S` was left by a
process that died mid-promotion, and is broken.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator

from mlflow import MlflowClient
from mlflow.entities.model_registry import RegisteredModel
from mlflow.exceptions import MlflowException

from dptune.errors import DptuneError

LOCK_SUFFIX = ".promotion-lock"
TOKEN_TAG = "dptune.lock_token"
HOLDER_TAG = "dptune.lock_holder"
LEASE_S = 600.0  # longer than any promotion (which loads the model and predicts once)
WAIT_S = 900.0


def lock_name(model: str) -> str:
    return f"{model}{LOCK_SUFFIX}"


def _current(client: MlflowClient, name: str) -> RegisteredModel | None:
    try:
        return client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _delete_if(client: MlflowClient, name: str, token: str | None) -> None:
    """Delete the lock if it still carries `token` (it was not taken over meanwhile)."""
    held = _current(client, name)
    if held is not None and (held.tags or {}).get(TOKEN_TAG) == token:
        with contextlib.suppress(MlflowException):  # deleted concurrently
            client.delete_registered_model(name)


@contextlib.contextmanager
def promotion_lock(
    client: MlflowClient, model: str, wait_s: float = WAIT_S, lease_s: float = LEASE_S
) -> Iterator[None]:
    """Hold `model`'s promotion lock for the block; one line (DptuneError) after `wait_s`."""
    name, token = lock_name(model), uuid.uuid4().hex
    holder = f"{socket.gethostname()} pid {os.getpid()}"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.create_registered_model(
                name,
                tags={TOKEN_TAG: token, HOLDER_TAG: holder},
                description=f"held while dptune promotes {model}; removed when done",
            )
            break
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        held = _current(client, name)
        if held is None:
            continue  # released meanwhile: try again at once
        age_s = time.time() - (held.creation_timestamp or 0) / 1000
        if age_s > lease_s:
            _delete_if(client, name, (held.tags or {}).get(TOKEN_TAG))  # a dead holder's
            continue
        if time.monotonic() > deadline:
            raise DptuneError(
                f"--model: {model} is being promoted by {(held.tags or {}).get(HOLDER_TAG, '?')} "
                f"(lock {name}, {age_s:.0f} s old); try again later"
            )
        time.sleep(0.1 + random.random() * 0.2)
    try:
        yield
    finally:
        _delete_if(client, name, token)

"""The pyfunc model's code (MLflow "models from code"): copied into every logged model and run
when it loads, so no pickled object is ever deserialised."""

from mlflow.models import set_model

from dptune.tracking.pyfunc import PromptModel

set_model(PromptModel())

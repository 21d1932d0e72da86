"""Models-from-code entry for torch models: MLflow runs this file at load (nothing pickled)."""

from mlflow.models import set_model

from experiments.pyfunc import TorchTabularModel

set_model(TorchTabularModel())

"""The selector's model-from-code file: MLflow runs it when the model loads, so that nothing is unpickled.

`mygo.stages.selector.log_selector` logs this file as the model's code (with `mygo/` beside it as code_paths).
"""

from mlflow.models import set_model

from mygo.stages.selector import SelectorModel

set_model(SelectorModel())

"""MLflow: stage runs, run reuse, the hand-offs between stages, code versions, redaction and figures."""

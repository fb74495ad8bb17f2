"""Arrays only: router summaries, score shards, clustering, selection, noise metrics (no model, no MLflow)."""

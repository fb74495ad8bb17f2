"""Shared fixtures: tiny real models and a real MLflow store per test."""

from __future__ import annotations

import mlflow
import pytest
import torch
from transformers import OlmoeConfig, OlmoeForCausalLM

TINY_ARCH = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=24,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_experts=8,
    num_experts_per_tok=2,
    max_position_embeddings=64,
    pad_token_id=0,
    eos_token_id=1,
    bos_token_id=None,
)


@pytest.fixture
def olmoe_model() -> OlmoeForCausalLM:
    torch.manual_seed(0)
    return OlmoeForCausalLM(OlmoeConfig(**TINY_ARCH)).eval()


@pytest.fixture
def padded_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(2, TINY_ARCH["vocab_size"], (3, 12), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 8:] = 0
    attention_mask[2, 5:] = 0
    input_ids[attention_mask == 0] = TINY_ARCH["pad_token_id"]
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@pytest.fixture
def tracking_store(tmp_path, monkeypatch):
    """A real MLflow store (SQLite + local artifacts) private to the test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)  # mlflow.set_experiment exports it
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()

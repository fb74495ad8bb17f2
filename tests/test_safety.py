"""Safety: a pickle payload is refused rather than run, and secrets never reach the tracking store."""

import os

import mlflow
import pytest
import torch
from omegaconf import OmegaConf

from mygo.models import convert_olmoe_to_select_moe
from mygo.models.router_weights import load_router_weights, router_state_dict
from mygo.tracking.runs import stage_run
from tests.helpers import artifact_paths


class Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_payload_is_refused_and_plain_tensors_load(olmoe_model, tmp_path, monkeypatch):
    # torch >= 2.6 defaults to weights_only=True; this makes a call without the explicit flag unpickle freely, so
    # the test fails unless mygo passes weights_only=True itself.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    model = convert_olmoe_to_select_moe(olmoe_model)
    marker = tmp_path / "pwned"
    evil = tmp_path / "router.pt"
    torch.save({"model.layers.0.mlp.quality_gate.weight": Payload(marker)}, evil)
    with pytest.raises(ValueError, match=f"{evil}: refused: not a plain tensor file"):
        load_router_weights(model, evil)
    assert not marker.exists()  # the payload never ran

    plain = tmp_path / "router_plain.pt"
    state = {name: torch.full_like(tensor, 0.5) for name, tensor in router_state_dict(model).items()}
    torch.save(state, plain)
    load_router_weights(model, plain)  # a legacy file of plain tensors loads, through weights_only
    assert all(torch.equal(tensor, state[name]) for name, tensor in router_state_dict(model).items())


def test_secrets_are_masked_in_params_tags_and_the_logged_config(tracking_store):
    cfg = OmegaConf.create(
        {
            "tracking": {"uri": None, "experiment": "mygo"},
            "model": {"source": "https://alice:hunter2@models.example/olmoe", "hf_token": "hf_abcdef"},
            "sweep": {"storage": "postgresql+psycopg://mygo:pg-secret@db/optuna"},
        }
    )
    with stage_run("convert", cfg, run_name="secrets") as run:
        mlflow.set_tag("mygo.note", "kept")
    logged = mlflow.get_run(run.info.run_id)
    text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config/resolved.yaml")
    everything = " ".join([*logged.data.params.values(), *logged.data.tags.values(), text])
    for secret in ("hunter2", "hf_abcdef", "pg-secret"):
        assert secret not in everything
    assert logged.data.params["model.source"] == "https://alice:***@models.example/olmoe"
    assert logged.data.params["model.hf_token"] == "***"
    assert logged.data.params["sweep.storage"] == "postgresql+psycopg://mygo:***@db/optuna"
    assert "config/resolved.yaml" in artifact_paths(run.info.run_id)


def test_only_keys_that_name_a_secret_are_masked():
    from mygo.tracking.redaction import MASK, redact_value

    for key in ("model.hf_token", "token", "db.password", "auth.client_secret", "api_key"):
        assert redact_value(key, "value") == MASK, key
    for key in ("model.build.training.max_train_tokens", "data.num_label_tokens", "tokenizer"):
        assert redact_value(key, 20000) == 20000, key


SECRETS = ("hf_zz1", "hf_zz2", "sk_zz3", "aws_zz4", "tv_zz5", "ghp_zz6", "q_zz7", "p/w@zz8")


def secret_config():
    """Every shape a secret took that the redaction let through before: each value holds one of SECRETS."""
    return OmegaConf.create(
        {
            "tracking": {"uri": None, "experiment": "mygo"},
            "stage_overrides": {"finetune": "target.hf_token=hf_zz1 target.training.epochs=2"},
            "upstream": {"convert_overrides": "'model.hf_token=\"hf_zz2\" convert.dtype=float32'"},
            "auth": {"secret_key": "sk_zz3", "aws_secret_access_key": "aws_zz4", "token_value": "tv_zz5"},
            "model": {"source": "https://ghp_zz6@github.example/org/model", "max_train_tokens": 20000},
            "data": {"url": "https://data.example/pool?user=me&password=q_zz7", "pad_token_id": 3},
            "sweep": {"storage": "postgresql+psycopg://mygo:p/w@zz8@db-host/optuna"},
        }
    )


def test_secrets_in_overrides_strings_odd_keys_tokens_queries_and_passwords_are_masked(tracking_store):
    with stage_run("convert", secret_config(), run_name="secrets") as run:
        pass
    logged = mlflow.get_run(run.info.run_id)
    text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config/resolved.yaml")
    everything = " ".join([*logged.data.params.values(), *logged.data.tags.values(), text])
    assert [secret for secret in SECRETS if secret in everything] == []
    params = logged.data.params
    assert params["stage_overrides.finetune"] == "target.hf_token=*** target.training.epochs=2"
    assert params["upstream.convert_overrides"] == "'model.hf_token=*** convert.dtype=float32'"
    assert params["model.source"] == "https://***@github.example/org/model"
    assert params["data.url"] == "https://data.example/pool?user=me&password=***"
    assert params["sweep.storage"] == "postgresql+psycopg://mygo:***@db-host/optuna"
    assert params["model.max_train_tokens"] == "20000" and params["data.pad_token_id"] == "3"  # counts stay


def test_error_texts_are_masked_in_the_run_and_on_the_console(tracking_store, capsys):
    from mygo.cli import main as mygo_main
    from mygo.tracking.failures import ERROR_TAG

    cfg = OmegaConf.create({"tracking": {"uri": None, "experiment": "mygo"}})
    with pytest.raises(ValueError), stage_run("convert", cfg) as run:
        raise ValueError("cannot reach https://alice:hunter2@models.example with target.hf_token=hf_zz1")
    failed = mlflow.get_run(run.info.run_id)
    log = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/logs/convert.log")
    for text in (failed.data.tags[ERROR_TAG], log):
        assert "hunter2" not in text and "hf_zz1" not in text and "alice:***@" in text

    assert mygo_main(["lineage", "https://alice:hunter2@example.org"]) == 2
    error = capsys.readouterr().err
    assert "hunter2" not in error and "https://alice:***@example.org" in error


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_password_in_a_p_value_fails_at_once_and_says_how_to_purge_it(tracking_store, tmp_path):
    """MLflow records `-P` values raw before mygo runs: the command stops before any work and names the remedy."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.helpers import REPO

    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env |= {"MLFLOW_TRACKING_URI": tracking_store, "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"}
    command = ["mlflow", "run", str(REPO), "--env-manager", "local", "-e", "sweep", "--experiment-name", "mygo"]
    command += ["-P", "storage=postgresql+psycopg://mygo:pw_zz9@127.0.0.1:1/optuna"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    [run] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.data.params["storage"].endswith("mygo:pw_zz9@127.0.0.1:1/optuna")  # what MLflow itself recorded
    assert "-P storage carries a password or token, and MLflow has already recorded it" in result.stderr
    assert f"mlflow runs delete --run-id {run.info.run_id}" in result.stderr and "mlflow gc" in result.stderr
    assert "PGPASSWORD" in result.stderr and "MYGO_OPTUNA_STORAGE" in result.stderr
    assert run.info.status == "FAILED" and "pw_zz9" not in run.data.tags["mygo.error"]
    assert "sweep.storage" not in run.data.params  # mygo stopped before composing (and logging) its config


def test_the_sweep_storage_url_can_come_from_the_environment(tracking_store, tmp_path, monkeypatch):
    from mygo.config import load_config
    from mygo.workflows.sweep import STORAGE_ENV, run_sweep

    monkeypatch.setenv(STORAGE_ENV, "postgresql+psycopg://mygo:pw_zz9@127.0.0.1:1/optuna")
    with pytest.raises(ValueError, match=r"cannot open the Optuna storage postgresql\+psycopg://mygo:\*\*\*@127"):
        run_sweep(load_config("sweep", ["sweep.connect_timeout=2", "sweep.space=sweeps/selection_noise.yaml"]))
    assert STORAGE_ENV == "MYGO_OPTUNA_STORAGE"


def test_which_p_values_count_as_carrying_a_secret():
    from mygo.tracking.redaction import secret_params

    params = {
        "storage": "postgresql+psycopg://user@db-host/optuna",  # the documented way: password in PGPASSWORD
        "k": "8",
        "overrides": "target.hf_token=hf_zz1 selection.percentage=0.1",
        "source": "https://alice:hunter2@models.example/olmoe",
        "hf_token": "hf_zz2",
    }
    assert secret_params(params) == ["hf_token", "overrides", "source"]


@pytest.mark.parametrize(
    "override",
    [
        "tracking.experiment=${oc.env:AWS_SECRET_ACCESS_KEY}",
        "stage_overrides.select='tracking.experiment=${oc.env:AWS_SECRET_ACCESS_KEY}'",
    ],
)
def test_env_interpolation_in_an_override_is_refused_before_anything_is_logged(
    tracking_store, monkeypatch, capsys, override
):
    from mygo.cli import main as mygo_main

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws_zz4")
    assert mygo_main(["main", override]) == 2
    error = capsys.readouterr().err
    assert f"override {override.split('=')[0]}:" in error and "reads an environment variable (oc.env)" in error
    assert "aws_zz4" not in error
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


def test_mygo_itself_writes_no_pickle_format_and_loads_torch_files_only_with_weights_only():
    """What the README's safety note claims of mygo's own code (Trainer checkpoints are transformers' files)."""
    import re

    from tests.helpers import REPO

    writes_pickle = re.compile(
        r"torch\.save\(|import (c?pickle|joblib|dill)|pickle\.dump|allow_pickle\s*=\s*True|to_pickle\("
    )
    problems = []
    for path in sorted((REPO / "mygo").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            if writes_pickle.search(code):
                problems.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
            if "torch.load(" in code and "weights_only=True" not in code:
                problems.append(f"{path.relative_to(REPO)}:{number}: torch.load without weights_only=True")
    assert problems == []

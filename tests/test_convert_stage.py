"""The convert stage against a real MLflow store: tiny base built once and reused, parity logged."""

from pathlib import Path

import mlflow
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from mygo.cli import main as mygo_main
from mygo.config import load_config
from mygo.models import SelectMoeForCausalLM, register_select_moe
from mygo.stages.convert import TINY_BASE_RUN_TAG, run_convert
from mygo.tracking.handoffs import MODEL_PATH_TAG, model_dir_of
from mygo.tracking.runs import STAGE_TAG
from tests.helpers import QUICK_TINY, local_olmoe


def quick_config(tmp_path, *extra):
    return load_config("convert", [*QUICK_TINY, f"convert.output_dir={tmp_path / 'outputs'}", *extra])


@pytest.mark.slow
def test_tiny_convert_logs_parity_and_reuses_its_base(tracking_store, tmp_path):
    first = mlflow.get_run(run_convert(quick_config(tmp_path)))
    assert first.info.status == "FINISHED"
    assert first.data.tags[STAGE_TAG] == "convert"
    assert first.data.tags[TINY_BASE_RUN_TAG] == first.info.run_id
    metrics = first.data.metrics
    assert metrics["parity/shared_weights_bit_identical"] == 1.0
    assert metrics["parity/bypass_logits_max_abs_diff"] <= 1e-5
    assert metrics["parity/roundtrip_logits_max_abs_diff"] == 0.0
    assert metrics["params/quality_gate"] == 2 * 128
    assert metrics["base/heldout_perplexity"] < metrics["base/heldout_perplexity_untrained"]
    assert first.data.params["model.name"] == "tiny"
    assert "config/resolved.yaml" in [a.path for a in mlflow.MlflowClient().list_artifacts(first.info.run_id, "config")]

    model_dir = model_dir_of(first)
    assert model_dir == Path(first.data.tags[MODEL_PATH_TAG])
    register_select_moe()
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert isinstance(model, SelectMoeForCausalLM) and len(tokenizer) == model.config.vocab_size

    # A second conversion with other gate settings reuses the base from the store instead of retraining.
    second = mlflow.get_run(run_convert(quick_config(tmp_path, "select_moe.trash_expert_mode=noise")))
    assert second.data.tags[TINY_BASE_RUN_TAG] == first.info.run_id
    assert "base/heldout_perplexity" not in second.data.metrics
    assert not list(Path(second.data.tags[MODEL_PATH_TAG]).glob("*.bin"))  # safetensors only


@pytest.mark.slow
def test_model_artifact_downloads_when_recorded_path_is_gone(tracking_store, tmp_path, olmoe_model):
    source = local_olmoe(olmoe_model, tmp_path)
    cfg = load_config("convert", [f"model.source={source}", f"convert.output_dir={tmp_path / 'out'}"])
    run = mlflow.get_run(run_convert(cfg))
    recorded = Path(run.data.tags[MODEL_PATH_TAG])
    for file in recorded.iterdir():
        file.unlink()
    fetched = model_dir_of(run)
    assert fetched != recorded and (fetched / "model.safetensors").is_file()


def test_convert_refuses_a_non_olmoe_source(tracking_store, tmp_path, capsys):
    from transformers import LlamaConfig, LlamaForCausalLM

    llama_dir = tmp_path / "llama"
    LlamaForCausalLM(
        LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    ).save_pretrained(llama_dir)
    assert mygo_main(["convert", "--source", str(llama_dir), f"convert.output_dir={tmp_path}"]) == 2
    assert "found model_type 'llama'" in capsys.readouterr().err
    failed = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert [r.info.status for r in failed] == ["FAILED"]


def test_unknown_trash_mode_via_cli_lists_valid_modes(tracking_store, capsys):
    assert mygo_main(["convert", "--trash_expert_mode", "bogus", "--model", "olmoe_1b_7b"]) == 2
    assert "'zero', 'noise'" in capsys.readouterr().err


def test_typo_in_override_names_the_key(tracking_store, capsys):
    assert mygo_main(["convert", "select_moe.trash_mode=noise"]) == 2
    assert "trash_mode" in capsys.readouterr().err


def test_unsupported_dtype_is_named(tracking_store, capsys):
    assert mygo_main(["convert", "convert.dtype=float8"]) == 2
    assert "convert.dtype: expected one of float32, bfloat16, float16, got 'float8'" in capsys.readouterr().err

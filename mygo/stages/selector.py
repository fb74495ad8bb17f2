"""The selector as a servable MLflow Model: the warmed-up Select-MoE that scores records as the score stage does.

score logs it (`runs:/<score run>/selector`, registered as `tracking.registered_selector`, default
`mygo-selector`) because the signals are defined there: the warmup run's router weights on the converted model,
the pool's chat encoding (`dataset.*` of the warmup run, with score's overrides) and the score settings. Input:
a table of records in any format `mygo.data.formats` reads (a `messages` column, or alpaca's
`instruction`/`output`, ...); output: one row per record with every per-sample signal score computes: `gate`
(the mean good_ratio over layers, the quality select sorts by), `gate/layer_<i>`, `nll`, `relevance`, `overlap`,
`prompt_copy`, `repetition` (and `ifd` when `score.ifd`), plus `id` when the input has one. The values come
from `score_rows` on tokens from `encode_messages`, the score stage's own functions, and `overlap` weighs 4-grams
by the scored pool's idf (logged with the model), so `mlflow models serve` answers as score does.

Why a `mlflow.pyfunc.PythonModel` and not a flavor: no flavor knows the Select-MoE (a custom architecture plus
separate router weights) nor mygo's signals. It is logged as a model from code (`selector_entry.py`, not a
pickled object: nothing mygo writes is loaded with pickle) and carries `mygo/` as code (`code_paths`), so serving
needs only the pinned packages; the weights are safetensors. The converted model travels in the
artifact when it is at most `tracking.log_model_max_mb`; a larger one is referenced by its path, and loading on a
machine without it fails naming that path.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

import mygo
from mygo.signal_table import STORED

logger = logging.getLogger(__name__)

SELECTOR_NAME = "selector"  # runs:/<score run>/selector
SELECTOR_VERSION_TAG = "mygo.selector_version"
SETTINGS_FILE = "selector.json"


def _directory_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def _records(model_input) -> list[dict]:
    """Rows of a DataFrame (or a list of dicts) as plain records; NaN (a column another row has) is dropped."""
    rows = model_input.to_dict(orient="records") if isinstance(model_input, pd.DataFrame) else list(model_input)
    clean = []
    for row in rows:
        record = {}
        for key, value in row.items():
            if isinstance(value, np.ndarray):
                value = value.tolist()
            if value is None or (isinstance(value, float) and np.isnan(value)):
                continue
            if key == "messages" and isinstance(value, list):  # served JSON and arrow give lists of dicts
                value = [dict(turn) for turn in value]
            record[key] = value
        clean.append(record)
    return clean


class SelectorModel(mlflow.pyfunc.PythonModel):
    """Scores records with the warmed-up Select-MoE (see the module docstring)."""

    def load_context(self, context) -> None:
        import torch
        from transformers import AutoTokenizer

        from mygo.analysis.text_overlap import NgramWeights
        from mygo.data.chat import ChatEncoding, ensure_chat_template
        from mygo.models import load_select_moe
        from mygo.models.router_weights import load_router_weights

        settings = json.loads(Path(context.artifacts["settings"]).read_text())
        model_dir = context.artifacts.get("model") or settings["model_path"]
        if not (Path(model_dir) / "config.json").is_file():
            raise FileNotFoundError(
                f"the selector's converted model is referenced at {model_dir} (larger than tracking.log_model_max_mb "
                "when it was logged), and that path has no model here"
            )
        self.tokenizer = ensure_chat_template(AutoTokenizer.from_pretrained(model_dir))
        self.model = load_select_moe(model_dir, dtype=torch.float32).eval()  # float32, as score runs on CPU
        load_router_weights(self.model, context.artifacts["router_weights"])
        self.options = ChatEncoding(**settings["encoding"])
        self.cfg = OmegaConf.create({"score": settings["score"]})
        self.overlap_weights = NgramWeights.load(Path(context.artifacts["overlap_weights"]))

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        import torch
        from tqdm.auto import tqdm

        from mygo.analysis.text_signals import text_signals
        from mygo.data.chat import encode_messages
        from mygo.data.formats import conversation
        from mygo.models.scoring import score_rows

        records = _records(model_input)
        conversations = [conversation(record) for record in records]
        encoded = [encode_messages(self.tokenizer, messages, self.options) for messages in conversations]
        order = np.argsort([-e["length"] for e in encoded], kind="stable")  # as score plans: longest first
        sequences = [encoded[i]["input_ids"] for i in order]
        labels = [encoded[i]["labels"] for i in order]
        with tqdm(total=len(order), disable=True) as progress:
            score = self.cfg.score
            quality, _, signals = score_rows(
                self.model,
                sequences,
                labels,
                self.tokenizer.pad_token_id,
                score.max_batch_tokens,
                score.max_batch_size,
                score.ifd,
                torch.float32,
                progress,
            )
        # In scoring order, as the model's signals are.
        signals |= {name: values[order] for name, values in text_signals(conversations, self.overlap_weights).items()}
        back = np.argsort(order)
        table = pd.DataFrame({"gate": quality.mean(axis=1)[back]})
        for layer in range(quality.shape[1]):
            table[f"gate/layer_{layer}"] = quality[back, layer]
        for name in STORED:
            if name in signals:
                table[name] = signals[name][back]
        if all("id" in record for record in records):
            table.insert(0, "id", [str(record["id"]) for record in records])
        return table


def selector_requirements() -> list[str]:
    from importlib.metadata import version

    names = ("mlflow", "torch", "transformers", "safetensors", "omegaconf", "pandas", "numpy", "tqdm", "datasets")
    names += ("scikit-learn",)  # the overlap signal's n-gram hashing
    return [f"{name}=={version(name)}" for name in names]


def log_selector(cfg: DictConfig, model_dir: Path, router_weights: str, overlap_weights: Path) -> str | None:
    """Log the selector as `selector` in the active score run and register it; returns "<name>/<version>".
    `overlap_weights`: the scored pool's 4-gram idf (`NgramWeights`), so served overlap is the pool's."""
    settings = {
        "encoding": {
            "max_sequence_length": int(cfg.dataset.max_sequence_length),
            "full_sequence_prediction": bool(cfg.dataset.full_sequence_prediction),
            "mask_special_tokens": bool(cfg.dataset.mask_special_tokens),
            "train_on_tool_turns": bool(cfg.dataset.get("train_on_tool_turns", False)),
        },
        "score": OmegaConf.to_container(cfg.score),
        "model_path": str(Path(model_dir).resolve()),
    }
    size, limit = _directory_mb(Path(model_dir)), float(cfg.tracking.log_model_max_mb)
    with tempfile.TemporaryDirectory() as scratch:
        settings_file = Path(scratch) / SETTINGS_FILE
        settings_file.write_text(json.dumps(settings, indent=2, sort_keys=True))
        artifacts = {
            "settings": str(settings_file),
            "router_weights": router_weights,
            "overlap_weights": str(overlap_weights),
        }
        if size <= limit:
            artifacts["model"] = str(model_dir)
        logger.info("selector: converted model %.1f MB, %s", size, "included" if size <= limit else "referenced")
        # No signature: an input schema would fix one format's columns, and the selector reads them all.
        info = mlflow.pyfunc.log_model(
            name=SELECTOR_NAME,
            python_model=str(Path(__file__).with_name("selector_entry.py")),  # models from code: no pickle
            artifacts=artifacts,
            code_paths=[str(Path(mygo.__file__).parent)],
            pip_requirements=selector_requirements(),
        )
    name = cfg.tracking.get("registered_selector", "mygo-selector")
    if not name or str(name).lower() in ("null", "none"):
        return None
    run = mlflow.get_run(mlflow.active_run().info.run_id)  # the active run's own copy has no tags set since
    tags = {"mygo.score_run": run.info.run_id, "mygo.warmup_run": run.data.tags.get("mygo.upstream_run", "")}
    version = mlflow.register_model(info.model_uri, str(name), tags=tags)
    mlflow.set_tag(SELECTOR_VERSION_TAG, f"{name}/{version.version}")
    return f"{name}/{version.version}"

"""The score stage: run the pool through the warmed-up router once and keep what selection needs.

Per sample and layer it keeps the mean good_ratio (quality) and the mean MoE router logits (the
clustering feature), over real tokens only. Only the decoder runs (no LM head), in inference mode,
on batches of similar length (rows are sorted by length and cut by a token budget): the model-facing core is
`mygo.models.scoring.score_rows`, importable without MLflow or the configs. Unless
`tracking.log_model` is false, the run also logs the selector itself as a servable model
(`runs:/<id>/selector`, registered as `mygo-selector`; `mygo.stages.selector`).

The work is planned as shards before it starts and each shard is written atomically with checksums
(`mygo.analysis.score_shards`), so re-running the same scoring continues after the last complete shard, and
several processes (`accelerate launch`/`torchrun`) each take every N-th shard of one plan.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from omegaconf import DictConfig, OmegaConf, open_dict
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from mygo.analysis.noise_metrics import noise_mask, noise_metrics, pool_noise_metrics
from mygo.analysis.quality_signals import all_signal_values
from mygo.analysis.score_shards import load_router_data, plan_shards, shard_problem, write_index, write_shard
from mygo.analysis.text_overlap import NgramWeights, message_texts
from mygo.analysis.text_signals import text_signals
from mygo.config import config_hash, split_overrides
from mygo.data.chat import ensure_chat_template, load_and_tokenize
from mygo.data.dedup import GROUPS_ARTIFACT
from mygo.data.pool import LABEL_FIELDS, NOISE_FIELD, RECORD_DIGEST_FIELD
from mygo.models import load_select_moe
from mygo.models.router_weights import load_router_weights
from mygo.models.scoring import score_rows
from mygo.stages.selector import log_selector
from mygo.tracking import plots
from mygo.tracking.handoffs import ROUTER_DATA_ARTIFACT, ROUTER_DATA_PATH_TAG, model_dir_of, router_weights_of
from mygo.tracking.pool_checks import log_decontamination
from mygo.tracking.runs import UPSTREAM_TAG, check_upstream, log_pool_input, stage_run

logger = logging.getLogger(__name__)

WARMUP_ONLY_KEYS = ("subset_ratio", "seed", "shuffle")  # how warmup sampled the pool; scoring takes all of it
OVERLAP_WEIGHTS_FILE = "overlap_weights.npz"
SIGNALS_VERSION = 3  # bump when the stored signals change: old shards are not continued (2: idf overlap; 3: repetition)
INDEX_COLUMNS = ("id", "dataset", "length", "file", "line", RECORD_DIGEST_FIELD, "num_label_tokens")


def pool_settings(warmup_run, dataset_overrides: str) -> DictConfig:
    """The warmup run's pool settings (the same pool, encoded the same way), with overrides applied."""
    resolved = mlflow.artifacts.load_text(f"runs:/{warmup_run.info.run_id}/config/resolved.yaml")
    dataset = OmegaConf.create(resolved).dataset
    dataset = OmegaConf.create({k: v for k, v in OmegaConf.to_container(dataset).items() if k not in WARMUP_ONLY_KEYS})
    for override in split_overrides(dataset_overrides):
        key, _, _ = override.partition("=")
        if OmegaConf.select(dataset, key, default="__missing__") == "__missing__":
            raise ValueError(f"dataset_overrides: no key {key!r} in the pool settings; keys: {sorted(dataset.keys())}")
    return OmegaConf.merge(dataset, OmegaConf.from_dotlist(split_overrides(dataset_overrides)))


def score_shards(
    model,
    tokenized,
    plan: list[np.ndarray],
    todo: list[int],
    work_dir: Path,
    cfg,
    tokenizer,
    conversations=None,
    weights: NgramWeights | None = None,
):
    """Score the planned shards in `todo` one by one, each written as soon as it is done: the scores held
    are one shard's worth (the pool and its tokenization are loaded whole before). Returns (samples, tokens).
    Beside the model's signals (`score_rows`), each sample gets its text's `overlap` (`answer_overlap`, 4-grams
    weighted by `weights`, the pool's), `prompt_copy` and `repetition`, all of its record's turns:
    `conversations`, the records row for row with `tokenized` (none without)."""
    feature_dtype = getattr(torch, cfg.score.feature_dtype)
    samples = tokens = 0
    with tqdm(total=sum(len(plan[s]) for s in todo), desc="score pool", disable=not todo) as progress:
        for shard in todo:
            rows = plan[shard]
            selected = tokenized.select(rows)
            sequences, labels = selected["input_ids"], selected["labels"]
            quality, features, signals = score_rows(
                model,
                sequences,
                labels,
                tokenizer.pad_token_id,
                cfg.score.max_batch_tokens,
                cfg.score.max_batch_size,
                cfg.score.ifd,
                feature_dtype,
                progress,
            )
            if conversations is not None:
                signals |= text_signals(conversations.select(rows)["messages"], weights or NgramWeights.uniform())
            write_shard(work_dir, shard, rows, quality, features, signals)
            samples += len(rows)
            tokens += sum(len(s) for s in sequences)
    return samples, tokens


def overlap_weights(conversations, work_dir: Path, write: bool) -> NgramWeights:
    """The idf of the pool's 4-grams, for `overlap`: counted over every message kept (each process counts the
    same), written beside the shards by the main process (logged with them, and with the selector). A resumed
    scoring reads the file its first attempt wrote: the same key, so the same pool and the same counts."""
    path = work_dir / OVERLAP_WEIGHTS_FILE
    if path.is_file():
        return NgramWeights.load(path)
    with tqdm(total=len(conversations), desc="overlap: 4-gram frequencies", unit="record") as progress:

        def texts():
            for batch in conversations.iter(batch_size=1000):
                yield from message_texts(batch["messages"])
                progress.update(len(batch["messages"]))

        weights = NgramWeights.fit(texts())
    if write:
        weights.save(path)
    return weights


def scoring_key(cfg: DictConfig, warmup_run_id: str, pool_digest: str) -> str:
    """What decides the scores: the same key continues the same work directory."""
    return config_hash(
        OmegaConf.create(
            {
                "warmup_run": warmup_run_id,
                "pool": pool_digest,
                "dataset": cfg.dataset,
                "score": cfg.score,
                "signals": SIGNALS_VERSION,
            }
        )
    )


def _index_frame(tokenized) -> pd.DataFrame:  # noqa: F821 - pandas comes with datasets
    columns = [c for c in (*INDEX_COLUMNS, *LABEL_FIELDS) if c in tokenized.column_names]
    return tokenized.select_columns(columns).to_pandas()


def log_score_results(work_dir: Path, started: float, totals: list[tuple[int, int, float]], reused: int) -> None:
    data = load_router_data(work_dir)
    quality = data.sample_quality
    samples = sum(t[0] for t in totals)
    tokens = sum(t[1] for t in totals)
    seconds = max(max((t[2] for t in totals), default=0.0), 1e-9)
    metrics = {
        "score/samples": float(len(quality)),
        "score/scored_now": float(samples),
        "score/shards_reused": float(reused),
        "score/samples_per_s": samples / seconds,
        "score/tokens_per_s": tokens / seconds,
        "score/seconds": time.perf_counter() - started,
        "score/quality_mean": float(quality.mean()),
        "score/quality_std": float(quality.std()),
    }
    for source, mean in data.index.assign(quality=quality).groupby("dataset")["quality"].mean().items():
        metrics[f"score/quality_mean/{source}"] = float(mean)
    for name, values in data.signals.items():
        metrics[f"score/{name}_mean"] = float(np.nanmean(values))
    noise = None
    if NOISE_FIELD in data.index.columns:
        noise = [kind if isinstance(kind, str) else None for kind in data.index[NOISE_FIELD]]
        if (noisy := noise_mask(noise)) is not None:
            metrics |= pool_noise_metrics(quality, noisy)
            metrics |= noise_metrics(quality, noise)  # noise/auroc/<kind> of the gate
            for name, values in all_signal_values(quality, data.signals).items():
                metrics |= noise_metrics(values, noise, prefix=f"noise/auroc/{name}")
    mlflow.log_metrics(metrics)
    plots.log_figure(
        plots.good_ratio_histogram(quality, noise, "per-sample quality of the pool"), "plots/quality_histogram.png"
    )
    mlflow.log_artifacts(str(work_dir), ROUTER_DATA_ARTIFACT)
    mlflow.set_tag(ROUTER_DATA_PATH_TAG, str(work_dir.resolve()))
    logger.info("scored %d samples (%d now, %d shards reused): %s", len(quality), samples, reused, metrics)


def run_score(cfg: DictConfig) -> str | None:
    """Score the pool with a warmup run's router; returns the MLflow run ID (None on non-main processes)."""
    if not cfg.upstream.warmup_run:
        raise ValueError("score needs a warmup run: -P warmup_run=<run id> (upstream.warmup_run)")
    warmup = check_upstream(cfg.upstream.warmup_run, "warmup")
    convert = check_upstream(warmup.data.tags[UPSTREAM_TAG], "convert")
    requested = cfg.copy()
    with open_dict(cfg):
        cfg.dataset = pool_settings(warmup, cfg.upstream.dataset_overrides)
    state = PartialState(cpu=not torch.cuda.is_available())
    started = time.perf_counter()
    main = state.is_main_process
    with stage_run(
        "score", cfg, upstream_run=warmup.info.run_id, run_name="score", active=main, requested=requested
    ) as run:
        model_dir = model_dir_of(convert)
        tokenizer = ensure_chat_template(AutoTokenizer.from_pretrained(model_dir))
        with state.main_process_first():
            pool, tokenized = load_and_tokenize(cfg.dataset, tokenizer)
        work_dir = Path(cfg.score.output_dir) / scoring_key(cfg, warmup.info.run_id, pool.digest)
        work_dir.mkdir(parents=True, exist_ok=True)
        plan = plan_shards(np.array(tokenized["length"]), cfg.score.shard_size)
        if state.is_main_process:
            log_pool_input(pool, context="scoring")
            if pool.dedup.settings.enabled:  # removed records are not in `tokenized`: never scored nor selected
                mlflow.log_metrics(pool.dedup.metrics())
                mlflow.log_text(pool.dedup.groups_jsonl(pool.records), GROUPS_ARTIFACT)
            log_decontamination(pool)
            write_index(work_dir, _index_frame(tokenized))

        mine = list(range(state.process_index, len(plan), state.num_processes))
        todo = [shard for shard in mine if shard_problem(work_dir, shard, plan[shard])]
        reused = len(mine) - len(todo)
        logger.info("%s: %d shards to score, %d complete already", work_dir, len(todo), reused)

        precision = "bf16" if torch.cuda.is_available() and cfg.score.precision in ("auto", "bf16") else "float32"
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        model = load_select_moe(model_dir, dtype=dtype).to(state.device).eval()
        router_weights = router_weights_of(warmup)
        load_router_weights(model, router_weights)

        scoring_started = time.perf_counter()
        conversations = pool.records.select(pool.kept)  # what dedup and decontamination kept: `tokenized`
        weights = overlap_weights(conversations, work_dir, state.is_main_process)
        samples, tokens = score_shards(model, tokenized, plan, todo, work_dir, cfg, tokenizer, conversations, weights)
        totals = gather_object([(samples, tokens, time.perf_counter() - scoring_started)])
        state.wait_for_everyone()
        if not state.is_main_process:
            return None
        log_score_results(work_dir, started, totals, reused)
        if cfg.tracking.get("log_model", True):  # the selector that made these scores, servable (mygo.stages.selector)
            logging_started = time.perf_counter()
            log_selector(cfg, model_dir, router_weights, work_dir / OVERLAP_WEIGHTS_FILE)
            mlflow.log_metric("score/log_model_seconds", time.perf_counter() - logging_started)
        return run.info.run_id

"""The select stage: cluster the scored pool by its router logits and choose a diverse, high-quality subset.

Reads a score run's router data (no model, no GPU: this is what makes sweeps over selection cheap),
clusters the L2-normalised features (`mygo.clustering`), applies a strategy (`mygo.selection`:
round robin across clusters, or the quality top-k / random baselines) within the budget (`selection.count`
or `selection.percentage`, split over sources by `selection.source_balance` and `selection.source_caps`)
and writes the chosen records exactly as they are in the pool files, in the order they were chosen.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig
from tqdm.auto import tqdm

from mygo.analysis.clustering import (
    CLUSTERING_METHODS,
    Clustering,
    fit_k_range,
    hdbscan,
    kmeans,
    prepare_features,
    silhouette,
)
from mygo.analysis.coverage import (
    Bigrams,
    Text,
    TextAndBigrams,
    TextEmbedder,
    answer_bigrams,
    text_fit_rows,
)
from mygo.analysis.diversity import mix_distance, shares
from mygo.analysis.noise_metrics import fraction_by_kind, noise_mask, pool_noise_metrics
from mygo.analysis.score_shards import RouterData
from mygo.atomic import atomic_path
from mygo.data.formats import conversation
from mygo.data.pool import (
    NOISE_FIELD,
    RECORD_DIGEST_FIELD,
    PoolError,
    iter_records_at,
    record_digest,
    record_id,
    record_texts,
    records_at,
)
from mygo.stages.selection_policy import SelectionPolicy, vetoed
from mygo.stages.targeting import encode_examples, log_target, similarity_order, target_of
from mygo.tracking import plots
from mygo.tracking.diversity import selection_diversity
from mygo.tracking.handoffs import SELECTED_IDS_TAG, convert_run_of, model_dir_of, router_data_of, router_data_path_of
from mygo.tracking.runs import (
    POOL_DIGEST_TAG,
    POOL_SOURCE_TAG,
    check_upstream,
    log_dataset_input,
    stage_run,
    tag_pool,
)

logger = logging.getLogger(__name__)

VETOES_DROPPED_TAG = "mygo.vetoes_dropped"  # the vetoes left fewer samples than the budget and were not applied


def check_settings(cfg: DictConfig) -> SelectionPolicy:
    """Fail on bad settings before loading anything."""
    if not cfg.upstream.score_run:
        raise ValueError("select needs a score run: -P score_run=<run id> (upstream.score_run)")
    policy = SelectionPolicy.of(cfg)  # the selection's own settings
    if cfg.clustering.method not in CLUSTERING_METHODS:
        raise ValueError(
            f"clustering.method={cfg.clustering.method!r} is not valid; choose one of {list(CLUSTERING_METHODS)}"
        )
    low, high = cfg.clustering.kmeans.k_range
    if low > high:
        raise ValueError(f"clustering.kmeans.k_range={[low, high]} is reversed; give [low, high]")
    return policy


def cluster(features: np.ndarray, cfg: DictConfig) -> Clustering:
    """The configured clustering; a setting the data cannot support is an error naming its config key."""
    try:
        return _cluster(features, cfg)
    except ValueError as error:
        raise ValueError(f"clustering.{cfg.clustering.method}: {error}") from error


def _cluster(features: np.ndarray, cfg: DictConfig) -> Clustering:
    clustering = cfg.clustering
    if clustering.method == "kmeans":
        options = clustering.kmeans
        k_range = fit_k_range(tuple(options.k_range), len(features), options.elbow_sample)
        if options.k is None and k_range != tuple(options.k_range):
            logger.warning(
                "clustering.kmeans.k_range=%s does not fit %d samples: the elbow searches %s",
                list(options.k_range),
                len(features),
                list(k_range),
            )
        return kmeans(
            features,
            k=options.k,
            k_range=k_range,
            auto_k=options.k is None,
            max_iters=options.max_iters,
            seed=clustering.seed,
            backend=clustering.backend,
            elbow_sample=options.elbow_sample,
            elbow_points=options.elbow_points,
            fit_sample=options.get("fit_sample"),  # configs from before the knob: all rows
        )
    options = clustering.hdbscan
    return hdbscan(
        features,
        min_cluster_size=options.min_cluster_size,
        min_samples=options.min_samples,
        metric=options.metric,
        auto_tune=options.auto_tune,
        seed=clustering.seed,
        backend=options.backend,  # HDBSCAN's own: clustering.backend names k-means backends
        pca_components=options.pca_components,
        fit_sample=options.fit_sample,
    )


def warn_if_degenerate(clustering: Clustering, n: int) -> None:
    """Round robin needs clusters: with most of the pool noise points, or under 3 clusters, it is nearly top-k."""
    noise = int((clustering.labels < 0).sum())
    degenerate = noise > n / 2 or clustering.num_clusters < 3
    mlflow.log_metrics({"clustering/noise_fraction": noise / n, "clustering/degenerate": float(degenerate)})
    if degenerate:
        message = (
            f"{clustering.method} found {clustering.num_clusters} cluster(s) and {noise} of {n} noise points: "
            "round robin reduces to a ranking; try other clustering settings (pca_components, min_cluster_size)"
        )
        logger.warning(message)
        mlflow.set_tag("mygo.clustering_degenerate", message)


def write_selected_records(index: pd.DataFrame, chosen: np.ndarray, path: Path) -> None:
    """The chosen records, byte for byte as in the pool files, in selection order.

    Each line is checked against the score run's index first (its id, and its digest where the index
    has one): a pool file edited after scoring would otherwise hand back other records under the
    selected ids.
    """
    wanted = index.iloc[chosen]
    lines: dict[int, bytes] = {}
    for file, group in wanted.groupby("file"):
        by_line = dict(zip(group["line"], group.index, strict=True))
        try:
            for number, raw in record_texts(file):  # JSONL lines; JSON array and Parquet records as one line
                if number in by_line:
                    _check_line(index.loc[by_line[number]], raw)
                    lines[by_line[number]] = raw if raw.endswith(b"\n") else raw + b"\n"
        except OSError as error:
            raise FileNotFoundError(f"pool file {file} (from the score run) cannot be read here: {error}") from error
    missing = [i for i in wanted.index if i not in lines]
    if missing:
        first = index.loc[missing[0]]
        raise PoolError(
            f"{first['file']}:{first['line']}: the score run's index has record {first['id']!r} there, "
            "but the file has no such line: it changed after scoring; score the pool again"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, temporary.open("wb") as handle:
        for row in wanted.index:
            handle.write(lines[row])


def _check_line(expected: pd.Series, raw: bytes) -> None:
    """The pool line is the record the index says it is, unchanged since scoring."""
    where = f"{expected['file']}:{expected['line']}"
    try:
        found = record_id(json.loads(raw.decode("utf-8")), expected["file"], int(expected["line"]))
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, PoolError):
        found = None
    if found != expected["id"]:
        raise PoolError(
            f"{where}: the score run's index has record {expected['id']!r} there, the file now has "
            f"{'no record' if found is None else repr(found)}: the pool changed after scoring; score it again"
        )
    recorded = expected.get(RECORD_DIGEST_FIELD)
    if isinstance(recorded, str) and record_digest(raw) != recorded:
        raise PoolError(
            f"{where}: record {found!r} changed after scoring (digest {record_digest(raw)[:12]}, "
            f"scored {recorded[:12]}); score the pool again"
        )


TEXT_BLOCK = 50_000  # records embedded at a time


def covering_text(index: pd.DataFrame, cfg: DictConfig) -> Text | None:
    """What `within_cluster: coverage` compares picks' texts by (`selection.novelty`): the text embedding of each
    record's prompt and answers (`mygo.analysis.coverage.text_embedding`), its answers' bigrams
    (`answer_bigrams`), or both, read from the pool files; None for the other orders. The embedding is fitted on
    its sample's records, then the pool is read once, a block at a time: no more than a block is held as text."""
    if cfg.selection.strategy != "round_robin" or cfg.selection.within_cluster != "coverage":
        return None
    novelty = cfg.selection.get("novelty", "embedding")  # configs from before the knob: the embedding
    started = time.perf_counter()
    locations = list(zip(index["file"], index["line"], strict=True))
    embedder = None
    if novelty in ("embedding", "both"):
        fit_rows = text_fit_rows(len(locations), cfg.selection.seed)
        fit_texts = [_whole_text(conversation(record)) for record in records_at([locations[i] for i in fit_rows])]
        embedder = TextEmbedder.fit(fit_texts, seed=cfg.selection.seed)
    embedded, bigrams, block = [], [], []
    for record in tqdm(iter_records_at(locations), total=len(locations), desc="text of the pool", mininterval=5):
        block.append(conversation(record))
        if len(block) == TEXT_BLOCK:
            _text_block(block, embedder, novelty, embedded, bigrams)
            block = []
    if block or not locations:
        _text_block(block, embedder, novelty, embedded, bigrams)
    embedding = np.concatenate(embedded) if embedder is not None else None
    answers = Bigrams.concatenate(bigrams) if novelty in ("bigrams", "both") else None
    logger.info(
        "the text novelty's inputs (%s) of %d records in %.1f s", novelty, len(locations), time.perf_counter() - started
    )
    if embedding is not None and answers is not None:
        return TextAndBigrams(embedding, answers, float(cfg.selection.get("bigram_weight", 1.0)))
    return answers if embedding is None else embedding


def _whole_text(turns: list[dict]) -> str:
    return " ".join(message["content"] for message in turns)


def _text_block(block: list[list[dict]], embedder, novelty: str, embedded: list, bigrams: list) -> None:
    if embedder is not None:
        embedded.append(embedder.embed([_whole_text(turns) for turns in block]))
    if novelty in ("bigrams", "both"):
        answers = [" ".join(m["content"] for m in turns if m["role"] == "assistant") for turns in block]
        bigrams.append(answer_bigrams(answers))


def trained_tokens(index: pd.DataFrame, tokenizer_location: str) -> np.ndarray:
    """Each record's tokens in its trained (assistant) turns, by the tokenizer at `tokenizer_location`, read from
    the pool files a block of records at a time: what `selection.tokens` budgets."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_location)
    counts = np.zeros(len(index), dtype=np.int64)
    locations = list(zip(index["file"], index["line"], strict=True))
    block: list[list[str]] = []
    row = 0
    for record in itertools.chain(iter_records_at(locations), [None]):  # None: the end, to count the last block
        if record is not None:
            block.append([m["content"] for m in conversation(record) if m["role"] == "assistant"])
        if block and (record is None or len(block) == TEXT_BLOCK):
            flat = [text for turns in block for text in turns]
            lengths = [len(ids) for ids in tokenizer(flat, add_special_tokens=False)["input_ids"]] if flat else []
            owner = np.repeat(np.arange(len(block)), [len(turns) for turns in block])
            counts[row : row + len(block)] = np.bincount(owner, weights=lengths, minlength=len(block))
            row, block = row + len(block), []
    return counts


def token_counter(cfg: DictConfig, score_run) -> str:
    """`selection.tokenizer`, or the scoring model's directory (its conversion's) when it is null."""
    if cfg.selection.get("tokenizer"):
        return str(cfg.selection.tokenizer)
    return str(model_dir_of(convert_run_of(score_run)[1]))


def selection_metrics(data: RouterData, quality: np.ndarray, selected: np.ndarray) -> dict[str, float]:
    metrics = {
        "selection/num_selected": float(selected.sum()),
        "selection/quality_mean_all": float(quality.mean()),
        "selection/quality_mean_selected": float(quality[selected].mean()),
    }
    # The selected source mix beside the pool's, and how far apart they are (total variation distance).
    sources = data.index["dataset"].to_numpy().astype(str)
    chosen = shares(sources, selected)
    for source, pool_share in shares(sources).items():
        metrics[f"selection/source/{source}"] = chosen.get(source, 0.0)
        metrics[f"selection/source_pool/{source}"] = pool_share
    metrics["selection/source_mix_distance"] = mix_distance(sources, selected)
    noisy = noise_mask(data.index[NOISE_FIELD]) if NOISE_FIELD in data.index.columns else None
    if noisy is not None:
        metrics |= pool_noise_metrics(quality, noisy)
        metrics["noise/fraction_selected"] = float(noisy[selected].mean())
        kinds = data.index[NOISE_FIELD].to_numpy()
        pool_share, selected_share = fraction_by_kind(kinds), fraction_by_kind(kinds[selected])
        for kind in pool_share:
            if kind != "clean":
                metrics[f"noise/fraction_pool/{kind}"] = pool_share[kind]
                metrics[f"noise/fraction_selected/{kind}"] = selected_share.get(kind, 0.0)
    return metrics


def veto_metrics(masks: dict[str, np.ndarray], noise: np.ndarray | None) -> dict[str, float]:
    """How many samples the vetoes keep out (`selection/vetoed[/<signal>]`) and, on a labelled pool, the share of
    them that is noise (`noise/fraction_vetoed[/<signal>]`; the pool's share is `noise/fraction_pool`)."""
    if not masks:
        return {}
    union = vetoed(masks)
    noisy = noise_mask(noise) if noise is not None else None
    metrics = {}
    for name, mask in [("", union), *((f"/{name}", mask) for name, mask in masks.items())]:
        metrics[f"selection/vetoed{name}"] = float(mask.sum())
        if noisy is not None and mask.any():
            metrics[f"noise/fraction_vetoed{name}"] = float(noisy[mask].mean())
    return metrics


def log_plots(
    features: np.ndarray, quality, clustering: Clustering, selected: np.ndarray, cfg: DictConfig, noise=None
) -> None:
    if clustering.elbow:
        plots.log_figure(plots.elbow_curve(clustering.elbow, clustering.chosen_k), "plots/elbow.png")
    plots.log_figure(plots.cluster_sizes(clustering.labels, selected), "plots/cluster_sizes.png")
    plots.log_figure(plots.quality_selected_vs_all(quality, selected), "plots/quality_selected_vs_all.png")
    if noise is not None and noise_mask(noise) is not None:
        plots.log_figure(plots.noise_selected_vs_pool(noise, selected), "plots/noise_selected_vs_pool.png")
    sample = np.random.default_rng(cfg.clustering.seed).permutation(len(features))[: cfg.plots.projection_sample]
    figure = plots.projection_2d(features[sample], clustering.labels[sample], selected[sample])
    plots.log_figure(figure, "plots/projection_2d.png")


def run_select(cfg: DictConfig) -> str:
    """Cluster, select and record; returns the MLflow run ID."""
    policy = check_settings(cfg)
    score_run = check_upstream(cfg.upstream.score_run, "score")
    count, tokens = cfg.selection.get("count"), cfg.selection.get("tokens")
    budget = (
        f"n{count}" if count is not None else f"t{tokens}" if tokens is not None else f"{cfg.selection.percentage:g}"
    )
    balance = cfg.selection.get("source_balance", "none")
    run_name = f"select-{cfg.selection.strategy}-{cfg.clustering.method}-{budget}" + (
        f"-{balance}" if balance != "none" else ""
    )
    with stage_run("select", cfg, upstream_run=score_run.info.run_id, run_name=run_name) as run:
        started = time.perf_counter()
        data = router_data_of(score_run)
        # The router data's directory is named by the digest of what decided the scores.
        recorded = router_data_path_of(score_run)
        log_dataset_input("router_data", str(recorded), recorded.name, context="selection")
        if POOL_DIGEST_TAG in score_run.data.tags:  # select reads the records from the pool's files
            pool_tags = score_run.data.tags
            tag_pool(pool_tags[POOL_DIGEST_TAG], json.loads(pool_tags[POOL_SOURCE_TAG]))
        sources = data.index["dataset"].to_numpy().astype(str)
        count, _ = policy.budget(sources)
        if cfg.selection.get("count") is not None:
            logger.info("selection.count=%d sets the budget; selection.percentage is not used", count)
        quality = policy.quality(data)
        features = prepare_features(data.features, cfg.clustering.pca_components, cfg.clustering.seed)
        clustered_at = time.perf_counter()
        clustering = cluster(features, cfg)
        clustering_seconds = time.perf_counter() - clustered_at
        vetoes = policy.vetoes(data)
        excluded = vetoed(vetoes)
        tokens = trained_tokens(data.index, token_counter(cfg, score_run)) if policy.tokens is not None else None
        target = target_of(cfg, score_run)
        ranked = highest = None
        if target is not None:  # the pool in the order round robin over the target's examples takes it
            allowed = np.ones(len(quality), dtype=bool) if excluded is None else ~excluded
            examples = encode_examples(target[1], score_run)
            ranked, highest = similarity_order(data.features, examples, allowed, count)
        text = covering_text(data.index, cfg) if target is None or policy.target_share < 1 else None
        chosen = policy.choose(quality, clustering.labels, sources, excluded, features, text, tokens, ranked)
        selected = chosen.rounds >= 0
        if excluded is not None and (selected & excluded).any():  # too few samples left: the vetoes were dropped
            mlflow.set_tag(VETOES_DROPPED_TAG, f"{int((selected & excluded).sum())} vetoed samples selected")
            vetoes = {}  # log no veto metrics for vetoes that did not act
        noise = data.index[NOISE_FIELD].to_numpy() if NOISE_FIELD in data.index.columns else None

        run_dir = Path(cfg.output_dir) / run.info.run_id
        selected_file = run_dir / "selected_data.jsonl"
        write_selected_records(data.index, chosen.indices, selected_file)
        table = data.index[["id", "dataset"]].assign(
            quality=quality, cluster=clustering.labels, selected=selected, round=chosen.rounds
        )
        with atomic_path(run_dir / "samples.parquet") as temporary:
            table.to_parquet(temporary, index=False)
        mlflow.log_artifact(str(selected_file), "selection")
        mlflow.log_artifact(str(run_dir / "samples.parquet"), "selection")

        score = silhouette(features, clustering.labels, cfg.clustering.silhouette_sample, cfg.clustering.seed)
        # The selection beside random and quality top-k ones of its size; plots/diversity.png.
        diversity = selection_diversity(data.index, features, quality, clustering.labels, selected, cfg)
        metrics = {
            "clustering/num_clusters": float(clustering.num_clusters),
            "clustering/noise_points": float((clustering.labels < 0).sum()),
            "clustering/seconds": clustering_seconds,
            **selection_metrics(data, quality, selected),
            **veto_metrics(vetoes, noise),
            **diversity,
            "select/seconds": time.perf_counter() - started,
        }
        if target is not None:
            log_target(target[0], target[1], highest, selected)
        if tokens is not None:  # the budget in tokens: what was taken, of the pool's
            metrics |= {"selection/tokens": float(tokens[selected].sum()), "selection/pool_tokens": float(tokens.sum())}
        if clustering.chosen_k is not None:
            metrics["clustering/chosen_k"] = float(clustering.chosen_k)
        if clustering.elbow:
            metrics["clustering/k_range_low"] = float(clustering.elbow[0][0])
            metrics["clustering/k_range_high"] = float(clustering.elbow[-1][0])
        warn_if_degenerate(clustering, len(quality))
        if clustering.inertia is not None:
            metrics["clustering/inertia"] = float(clustering.inertia)
        if score is not None:
            metrics["clustering/silhouette"] = float(score)
        mlflow.log_metrics(metrics)
        for k, inertia in clustering.elbow:  # the elbow curve as a metric over k, for the UI's charts
            mlflow.log_metric("clustering/elbow_inertia", inertia, step=k)
        ids_digest = hashlib.sha256("\n".join(data.index["id"].iloc[chosen.indices]).encode()).hexdigest()
        mlflow.set_tags({SELECTED_IDS_TAG: ids_digest, "mygo.clustering_backend": clustering.backend})
        log_plots(features, quality, clustering, selected, cfg, noise)
        logger.info(
            "selected %d of %d samples (%s): %s", len(chosen.indices), len(quality), cfg.selection.strategy, metrics
        )
        return run.info.run_id

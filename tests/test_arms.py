"""The arithmetic of a comparison: estimates over seeds, deltas paired by seed, and how they are printed."""

import math
import shutil

import pytest
from omegaconf import OmegaConf

from mygo.analysis.arms import (
    arm_estimates,
    domain_means,
    estimate,
    eval_figures,
    lower_is_better,
    paired_deltas,
)
from mygo.config import CONFIG_DIR_ENV, config_dir, load_config
from mygo.workflows.compare import comparison_rows, format_comparison
from mygo.workflows.controls import control_dir, control_overrides

BPB = "eval/qa/val/bpb"
ACC = "eval/mc/val/acc"


def test_an_estimate_is_the_mean_with_the_standard_error_over_seeds():
    found = estimate([1.0, 2.0, 3.0])
    assert found.mean == 2.0 and found.n == 3
    assert found.stderr == pytest.approx(1.0 / math.sqrt(3))  # sample std 1, over sqrt(3)
    one = estimate([5.0])
    assert one.mean == 5.0 and math.isnan(one.stderr) and math.isnan(one.ratio())
    with pytest.raises(ValueError, match="no values"):
        estimate([])


def test_eval_figures_keep_headline_metrics_only():
    metrics = {BPB: 1.0, f"{BPB}_stderr": 0.1, "eval/mc/val/history/acc": 0.3, ACC: 0.5, "evaluate/seconds": 3.0}
    assert eval_figures(metrics) == {BPB: 1.0, ACC: 0.5}


def test_deltas_pair_seeds_and_a_single_base_pairs_with_every_seed():
    arms = {
        "selection": {0: {BPB: 1.00}, 1: {BPB: 1.10}, 2: {BPB: 0.90}},
        "random": {0: {BPB: 1.20}, 1: {BPB: 1.25}, 2: {BPB: 1.15}},
        "base": {0: {BPB: 2.0}},
    }
    vs_random = paired_deltas(arms, "selection", "random")[BPB]
    differences = [-0.20, -0.15, -0.25]
    assert vs_random.mean == pytest.approx(sum(differences) / 3)
    assert vs_random.stderr == pytest.approx(estimate(differences).stderr)
    # Paired, the seed-to-seed spread the two arms share cancels: far smaller than the unpaired spread.
    assert vs_random.stderr < arm_estimates(arms)["selection"][BPB].stderr
    vs_base = paired_deltas(arms, "selection", "base")[BPB]
    assert vs_base.mean == pytest.approx(-1.0) and vs_base.n == 3


def test_the_printed_comparison_says_which_way_is_better():
    assert lower_is_better(BPB) and not lower_is_better(ACC)
    arms = {
        "selection": {0: {BPB: 1.0, ACC: 0.30}, 1: {BPB: 1.1, ACC: 0.32}},
        "random": {0: {BPB: 1.2, ACC: 0.31}, 1: {BPB: 1.3, ACC: 0.35}},
    }
    rows = comparison_rows(arms)
    assert {(row["figure"], row["arm"]) for row in rows} == {
        (f, a) for f in (BPB, ACC) for a in ("selection", "random")
    }
    text = format_comparison(rows)
    bpb_block, acc_block = text.split("\n\n")[1], text.split("\n\n")[0]
    assert "lower is better" in bpb_block and "selection better" in bpb_block  # 0.2 lower in both seeds
    assert "higher is better" in acc_block and "selection not better" in acc_block
    assert "-0.2000 ± 0.0000" in bpb_block


def test_the_printed_comparison_holds_the_headline_figures_and_the_csv_every_figure():
    pooled, nll = "eval/qa/val/bits_per_byte", "eval/qa/val/nll"
    arms = {
        arm: {0: {BPB: 1.0, pooled: 0.9, nll: 50.0}, 1: {BPB: 1.1, pooled: 0.95, nll: 52.0}}
        for arm in ("selection", "random")
    }
    rows = comparison_rows(arms)
    text = format_comparison(rows)
    assert f"{pooled} (lower is better)" in text and f"{BPB} (lower is better)" in text and nll not in text
    assert nll in format_comparison(rows, headline=False)


def test_a_difference_the_same_at_every_seed_has_no_spread_and_says_so():
    arms = {
        "selection": {s: {ACC: 0.3 + 0.05 * s} for s in range(3)},
        "random": {s: {ACC: 0.35 + 0.05 * s} for s in range(3)},
    }
    delta = paired_deltas(arms, "selection", "random")[ACC]
    assert delta.mean == pytest.approx(-0.05) and delta.stderr == 0.0  # not float dust of 1e-17
    assert "(the same at every seed, selection not better)" in format_comparison(comparison_rows(arms))


def test_out_of_domain_tasks_are_averaged_and_weigh_as_much_as_the_in_domain_ones():
    metrics = {
        "eval/home/val/bits_per_byte": 1.0,
        "eval/far_a/val/bits_per_byte": 2.0,
        "eval/far_b/val/bits_per_byte": 4.0,
        "eval/far_c/val/bits_per_byte": 6.0,
        "eval/home/test/bits_per_byte": 1.5,
        "eval/far_a/test/bits_per_byte": 2.5,  # far_b and far_c not on test: no group mean there
        "eval/home/val/bpb": 0.9,
    }
    means = domain_means(metrics, ["home"], ["far_a", "far_b", "far_c"])
    assert means == {
        "eval/out_of_domain/val/bits_per_byte": 4.0,
        "eval/all_domains/val/bits_per_byte": 2.5,  # (1.0 + 4.0) / 2: three far tasks weigh as much as one home task
    }
    assert domain_means(metrics, [], ["far_a", "far_b", "far_c"]) == {"eval/out_of_domain/val/bits_per_byte": 4.0}
    assert domain_means(metrics, ["home"], []) == {}
    # Seeds of such figures compare like any task's: a delta paired by seed.
    arms = {
        "selection": {s: domain_means(metrics, ["home"], ["far_a"]) for s in (0, 1)},
        "random": {
            s: domain_means({**metrics, "eval/far_a/val/bits_per_byte": 2.0 + s}, ["home"], ["far_a"]) for s in (0, 1)
        },
    }
    assert paired_deltas(arms, "selection", "random")["eval/out_of_domain/val/bits_per_byte"].mean == -0.5


def test_every_control_preset_decides_every_selection_knob():
    knobs = set(load_config("select").selection)
    for arm in ("random", "quality_topk", "full"):
        decided = {override.split("=", 1)[0].removeprefix("selection.") for override in control_overrides(arm, 7)}
        inherited = set(OmegaConf.load(control_dir() / f"{arm}.yaml").inherit)
        assert decided | inherited == knobs and not decided & inherited, arm
        # What each arm's config composes to: no band, no vetoes, whatever the pipeline's select says.
        config = load_config(
            "select", ["selection.quality_floor=0.3", "selection.within_cluster=coverage"] + control_overrides(arm, 7)
        )
        assert config.selection.quality_floor == 0 and config.selection.veto_signals is None, arm
        assert config.selection.within_cluster == "random", arm
    assert "selection.seed=7" in control_overrides("random", 7)  # a new draw per seed
    assert "selection.seed=7" not in control_overrides("quality_topk", 7)


def test_a_control_preset_that_leaves_a_knob_undecided_is_an_error_naming_it(tmp_path, monkeypatch):
    shutil.copytree(config_dir(), tmp_path / "configs")
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "configs"))
    preset = tmp_path / "configs" / "control" / "random.yaml"
    original = preset.read_text()
    preset.write_text(original.replace("  within_cluster: random\n", ""))
    with pytest.raises(
        ValueError, match=r"random.yaml: decides nothing about selection knob\(s\) \['within_cluster'\]"
    ):
        control_overrides("random", 0)
    preset.write_text(original.replace("inherit: [", "inherit: [strategy, "))
    with pytest.raises(ValueError, match=r"both sets and inherits selection knob\(s\) \['strategy'\]"):
        control_overrides("random", 0)

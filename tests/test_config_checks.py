"""Every override is checked before any work: unknown keys (`+key` too) name the nearest valid ones, values are
checked against the knobs' declarations (mygo.knobs), and main and sweep compose every stage's config before the first
stage runs."""

from __future__ import annotations

import mlflow
import pytest
from omegaconf import OmegaConf

from mygo.cli import COMMANDS, build_parser, command_overrides
from mygo.cli import main as mygo_main
from mygo.config import flatten_config, load_config
from mygo.knobs import CONFIGS, config_texts, declared, option_type
from mygo.knobs.declare import Bool, Choice, Float, Int, List
from mygo.workflows.stage_configs import stage_overrides_of
from tests.helpers import REPO


def runs_in_store() -> list:
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


@pytest.mark.parametrize(
    ("stage", "override", "message"),
    [
        ("select", "+selection.precentage=0.1", "adds the key 'selection.precentage'"),
        ("select", "++selection.precentage=0.1", "did you mean selection.percentage"),
        ("select", "selection.precentage=0.1", "has no key 'selection.precentage'; did you mean selection.percentage"),
        ("main", "+dataset.data_dir=/data/less", "stage_overrides.<stage>"),
    ],
)
def test_unknown_keys_are_refused_with_the_nearest_valid_ones(stage, override, message):
    with pytest.raises(ValueError, match=message.replace("+", r"\+").replace("(", r"\(")):
        load_config(stage, [override])


def test_added_groups_and_forced_overrides_of_existing_keys_still_work():
    assert load_config("select", ["++selection.percentage=0.2"]).selection.percentage == 0.2
    assert load_config("warmup", ["dataset=less"]).dataset.name == "less"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["select", "--k", "ten"], "--k='ten' (clustering.kmeans.k): expected an int"),
        (["select", "--selection_percentage", "5%"], "expected a float"),
        (["select", "selection.percentage=2"], "selection.percentage: expected float in (0, 1], got 2"),
        (["select", "clustering.kmeans.k=ten"], "clustering.kmeans.k: expected int >= 2 or null, got 'ten'"),
        (["warmup", "--peft_mode", "qlora"], "training.peft_mode: expected one of full_rank, lora, got 'qlora'"),
        (["evaluate", "--limit", "0"], "evaluation.limit: expected float > 0 or null, got 0"),
        (["sweep", "--n_trials", "0"], "sweep.n_trials: expected int >= 1, got 0"),
    ],
)
def test_a_bad_value_is_one_line_naming_key_expectation_and_value(tracking_store, capsys, argv, message):
    assert mygo_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1, err
    assert runs_in_store() == []


def test_knob_values_with_commas_or_equals_reach_the_config_as_one_string():
    args = build_parser().parse_args(["evaluate", "--tasks", "mmlu,arc_easy"])
    assert load_config("evaluate", command_overrides(COMMANDS["evaluate"], args)).evaluation.tasks == "mmlu,arc_easy"
    args = build_parser().parse_args(["score", "--dataset_overrides", "data_dir=/data num_proc=2"])
    cfg = load_config("score", command_overrides(COMMANDS["score"], args))
    assert cfg.upstream.dataset_overrides == "data_dir=/data num_proc=2"
    args = build_parser().parse_args(["evaluate", "--splits", "val,test"])  # a list knob: comma-separated
    assert list(load_config("evaluate", command_overrides(COMMANDS["evaluate"], args)).evaluation.splits) == [
        "val",
        "test",
    ]


def test_main_and_sweep_address_a_stages_key_as_sweep_spaces_do():
    """`select.selection.quality_floor=0` is forwarded as `stage_overrides.select` would be, after it (it wins)."""
    for command in ("main", "sweep"):
        cfg = load_config(
            command,
            [
                "stage_overrides.select='selection.count=3 selection.quality_floor=0.2'",
                "select.selection.quality_floor=0",
                "select.selection.veto_signals=[nll,gate]",
                "finetune.target.training.epochs=2",
            ],
        )
        select = load_config("select", stage_overrides_of(cfg, "select"))
        assert select.selection.quality_floor == 0 and select.selection.count == 3
        assert list(select.selection.veto_signals) == ["nll", "gate"]
        assert load_config("finetune", stage_overrides_of(cfg, "finetune")).target.training.epochs == 2
    # In a stage's own config a key that starts with a stage's name is its own (convert.output_dir).
    assert load_config("convert", ["convert.output_dir=elsewhere"]).convert.output_dir == "elsewhere"


def test_main_checks_every_stage_before_the_first_runs(tracking_store, capsys):
    assert mygo_main(["main", "stage_overrides.finetune='target.lora.rr=8'"]) == 2
    assert "stage_overrides.finetune: config 'finetune' has no key 'target.lora.rr'" in capsys.readouterr().err
    assert mygo_main(["main", "finetune.target.lora.rr=8"]) == 2
    assert "stage_overrides.finetune: config 'finetune' has no key 'target.lora.rr'" in capsys.readouterr().err
    assert mygo_main(["main", "stage_overrides.evaluate='evaluation.limit=-1'"]) == 2
    assert "stage_overrides.evaluate" in capsys.readouterr().err
    assert runs_in_store() == []  # no convert, no pipeline run


def test_sweep_checks_its_stage_overrides_and_every_sampled_key_first(tracking_store, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(
        "objective: {metric: noise/fraction_selected, direction: minimize, stage: select}\n"
        "params:\n"
        "  select.selection.percentage: {type: float, low: 0.05, high: 1.5}\n"
    )
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert mygo_main(["sweep", "--space", str(space), "--storage", storage]) == 2
    assert "selection.percentage: expected float in (0, 1], got 1.5" in capsys.readouterr().err
    space.write_text(space.read_text().replace("high: 1.5", "high: 0.2"))
    argv = ["sweep", "--space", str(space), "--storage", storage, "stage_overrides.select='clustering.kmeans.kk=3'"]
    assert mygo_main(argv) == 2
    assert "has no key 'clustering.kmeans.kk'" in capsys.readouterr().err
    assert not (tmp_path / "optuna.db").exists()
    assert runs_in_store() == []


def test_every_key_of_a_composed_config_is_declared_and_every_declared_key_is_there():
    for name in CONFIGS:
        cfg = load_config(name)  # the defaults pass their own declarations (load_config checks them)
        knobs = declared(name).knobs()
        assert all(OmegaConf.select(cfg, key, default="<missing>") != "<missing>" for key in knobs), name
        groups = {*declared(name).groups, "stage_overrides"}  # a preset's other keys are its own (a tiny base's)
        written = [key for key in flatten_config(cfg) if key.split(".")[0] not in groups]
        assert [key for key in written if not any(key == k or key.startswith(f"{k}.") for k in knobs)] == [], name


def test_the_configs_are_written_from_the_declarations():
    for name, text in config_texts().items():
        assert (REPO / "configs" / name).read_text() == text, f"configs/{name}: run python scripts/write_configs.py"


def test_options_take_their_type_from_the_key_they_set():
    assert option_type("sweep", "sweep.n_trials") == "int"
    assert option_type("evaluate", "evaluation.splits") == "list"
    assert option_type("evaluate", "evaluation.base_only") == "bool"
    assert option_type("finetune", "target.lora.r") == "int"  # a preset's key, declared in mygo/knobs/groups.py
    assert option_type("warmup", "model") == "str"  # a group's choice
    args = build_parser().parse_args(["sweep", "--n_trials", "three"])
    with pytest.raises(ValueError, match=r"--n_trials='three' \(sweep.n_trials\): expected an int"):
        command_overrides(COMMANDS["sweep"], args)


@pytest.mark.parametrize(
    ("knob", "expected", "good", "bad"),
    [
        (Float(0.5, gt=0, le=1), "float in (0, 1]", [1, 0.5], [0, 1.01, "0.5", True, None]),
        (Int(2, ge=2, null=True), "int >= 2 or null", [2, None], [1, 2.5, "ten", False]),
        (Choice("kmeans", ("kmeans", "hdbscan")), "one of kmeans, hdbscan", ["kmeans"], ["dbscan", 1]),
        (List(str, None, null=True), "list of str or null", [["a"], [], None], [["a", 1], "a"]),
        (Float(0, ge=0, lt=1), "float in [0, 1)", [0, 0.99], [1, -0.1]),
        (Bool(True), "bool", [True, False], [1, "true", None]),
    ],
)
def test_a_knob_accepts_what_it_declares_and_says_what_it_expects(knob, expected, good, bad):
    assert knob.expected == expected
    assert all(knob.accepts(value) for value in good)
    assert not any(knob.accepts(value) for value in bad)


def test_bad_values_fail_composition_naming_the_key_and_what_it_expects():
    assert load_config("select", ["selection.quality_signal=rank_mean"]).selection.quality_signal == "rank_mean"
    with pytest.raises(ValueError, match=r"selection.quality_floor: expected float in \[0, 1\), got 1"):
        load_config("select", ["selection.quality_floor=1"])
    with pytest.raises(ValueError, match=r"tracking.system_metrics_interval: expected float > 0, got 0"):
        load_config("lineage", ["tracking.system_metrics_interval=0"])
    with pytest.raises(ValueError, match=r"target.lora.r: expected int >= 1, got 0"):
        load_config("finetune", ["target.lora.r=0"])
    assert load_config("warmup", ["corruption.kinds=[shuffle]"]).corruption.kinds == ["shuffle"]


def test_an_integer_for_a_float_gate_setting_reaches_the_strict_model_config_as_that_float():
    from mygo.models import SelectMoeConfig
    from mygo.models.configuration_select_moe import select_moe_settings

    given_int = load_config("warmup", ["select_moe.quality_loss_weight=20"])
    settings = select_moe_settings(given_int.select_moe)
    assert settings["quality_loss_weight"] == 20.0 and isinstance(settings["quality_loss_weight"], float)
    assert SelectMoeConfig(**settings).quality_loss_weight == 20.0
    assert settings["sample_wise_averaging"] is False  # bools stay bools


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_no_named_parameter_is_also_a_logged_config_key(name):
    """`mlflow run` logs every -P parameter as a param before the command starts; a config key of the same name,
    logged again by the stage with another spelling of its value ('' against "''"), fails the run."""
    command = COMMANDS[name]
    logged = set(flatten_config(load_config(command.config)))
    options = {knob.option for knob in command.named} | {"overrides"}
    assert not options & logged, f"{name}: -P {sorted(options & logged)} would be logged twice"

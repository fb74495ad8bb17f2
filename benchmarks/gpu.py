"""The GPU paths in one prepared command: `python benchmarks/gpu.py --out gpu.json [--parts ...] [--small]`.

For the few minutes a GPU is at hand (one H100/H200-class GPU, no network, no hub): every part builds what it
measures from random weights of the real shapes, runs mygo's own code on it, stops measuring when its time box is
spent, and writes what it measured; a part that fails is recorded with its error and the others go on.

- forward: OLMoE-1B-7B's shape (16 layers, hidden 2048, 64 experts, top-8; random bf16 weights built on the
  device) converted to Select-MoE (`mygo.models.convert_olmoe_to_select_moe`); decoder forward tokens/s over a
  length-sorted token-budget batch plan like the scorer's (`mygo.models.scoring.length_batches`), the Select-MoE /
  OLMoE time on the same weights and batches, peak memory, MFU, and one profiled forward of each model (attention,
  router, experts, quality gate);
- scoring: the scoring core end to end (`score_rows`, the overlap signal, shards written as the score stage writes
  them) on a synthetic pool of 20,000 samples of a long-tailed length spread: samples/s, tokens/s, and the wall
  time projected for the 270k LESS pool;
- kmeans: the select stage's k-means (elbow over k_range on a sample, then the chosen k on all rows;
  `mygo.analysis.clustering.kmeans`) at 270,000 x 1024 on the GPU backends (torch on CUDA, cuML where installed)
  and on the CPU default (scikit-learn), with each backend's inertia over the CPU default's;
- warmup: optimizer steps of the gates (and router gates) on the converted model with mygo's quality loss, under
  `accelerate` (bf16 autocast on a GPU), the settings of configs/warmup.yaml;
- finetune: LoRA steps (peft) on Qwen2.5-1.5B's shape with configs/target/qwen2_5_1_5b.yaml's recipe.

It imports no MLflow, Hydra, OmegaConf, Optuna nor datasets (configs are read with PyYAML), and each part imports
what it needs when it runs, so a broken package fails that part only. `--small` cuts every size so the whole run
takes seconds on a CPU (tests/test_gpu_benchmark.py runs it so). Exit status: 0 when every chosen part finished
("ok"), 1 when any failed or ran out of its time box, 2 for bad arguments. See benchmarks/README.md.

This file is the command (its arguments and the run over the parts); the harness, the synthetic workload, each part
and the report are modules of benchmarks/gpu_bench/.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

# Run as a script, benchmarks/ is on sys.path already; imported (by a test), it is added here: the package below and
# benchmarks/clustering.py (the k-means part's features) are imported from there by absolute name.
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.append(HERE)

from gpu_bench.harness import (  # noqa: E402
    FULL,
    MODEL_PARTS,
    PARTS,
    RUN_ORDER,
    SMALL,
    TIME_BOXES,
    TOTAL_S,
    Context,
    PeakMemory,
)
from gpu_bench.report import environment, print_table, table_rows, write_report  # noqa: E402
from gpu_bench.runner import run_part  # noqa: E402


def parts_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PARTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown part(s) {unknown or [text]}; choose from {','.join(PARTS)}")
    return names


def time_boxes(text: str) -> dict[str, float]:
    boxes = dict(TIME_BOXES)
    for item in filter(None, (item.strip() for item in text.split(","))):
        name, _, seconds = item.partition("=")
        if name not in PARTS:
            raise argparse.ArgumentTypeError(f"--time-box: unknown part {name!r}; choose from {','.join(PARTS)}")
        try:
            boxes[name] = float(seconds)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--time-box: {item!r} is not PART=SECONDS") from None
    return boxes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON report")
    parser.add_argument("--parts", type=parts_list, default=list(PARTS), help=f"comma-separated, of {','.join(PARTS)}")
    parser.add_argument("--small", action="store_true", help="tiny sizes: the whole run in seconds on a CPU")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available")
    parser.add_argument(
        "--time-box",
        type=time_boxes,
        default=dict(TIME_BOXES),
        help="seconds a part may measure, e.g. scoring=200,kmeans=60 (defaults: "
        + ",".join(f"{name}={seconds:g}" for name, seconds in TIME_BOXES.items())
        + ")",
    )
    parser.add_argument("--total-s", type=float, default=TOTAL_S, help="all parts' time boxes together, at most")
    parser.add_argument("--fail-part", choices=PARTS, help=argparse.SUPPRESS)  # tests: a part that raises
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu.py: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    ctx = Context(device, SMALL if args.small else FULL, args.small, args.fail_part)
    report = {"environment": environment(device, args), "sizes": asdict(ctx.sizes), "parts": {}}
    memory = PeakMemory(ctx.cuda)
    deadline = started + args.total_s
    for name in (name for name in RUN_ORDER if name in args.parts):
        left = deadline - time.perf_counter()
        if left < 5:
            report["parts"][name] = {"status": "skipped", "error": f"--total-s={args.total_s:g} spent", "metrics": {}}
            continue
        report["parts"][name] = run_part(name, ctx, min(args.time_box[name], left), memory)
        later = RUN_ORDER[RUN_ORDER.index(name) + 1 :]
        if not any(part in args.parts for part in later if part in MODEL_PARTS):
            ctx.free()  # no later part takes the Select-MoE
        write_report(args.out, report)  # after every part: a run cut short keeps what it measured
    report["parts"] = {name: report["parts"][name] for name in PARTS if name in report["parts"]}
    report["wall_s"] = time.perf_counter() - started
    targets_apply = ctx.cuda and not args.small
    rows = table_rows(report, targets_apply)
    report["table"] = [dict(zip(("part", "metric", "value", "target", "met"), row, strict=True)) for row in rows]
    print_table(rows, targets_apply)
    write_report(args.out, report)
    print(f"[gpu.py] {report['wall_s']:.1f} s in all; report in {args.out}", file=sys.stderr)
    return 0 if all(record["status"] == "ok" for record in report["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

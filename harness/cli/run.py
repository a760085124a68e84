"""``harness run``: evaluate a method on a task by label propagation and write a run record."""

from __future__ import annotations

import argparse

from harness.cli.common import add_common_data_flags, parse_sequences


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run",
        help="evaluate a method on a task by label propagation",
        description="Extract features, propagate the first frame's labels, write predictions in the "
        "benchmark's official format, score them and write a run record. The last stdout line is the "
        "record's path. A rerun of the same configuration resumes per sequence.",
        epilog="examples:\n"
        "  harness run --method crw --task davis\n"
        "  harness run --method pixels --task davis2016 --data-root ~/data/DAVIS2016\n"
        "  harness run --method timm:resnet18@crw --task davis --protocol dino --set protocol.topk=10\n"
        "  harness run --method crw --task davis --adapt --set adapt.steps=20",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_argument_group("what to run")
    what.add_argument("--method", required=True, help="registered method name (see `harness list`)")
    what.add_argument("--task", required=True, help="registered task name: davis, davis2016, jhmdb, vip")
    what.add_argument("--protocol", default="crw", help="propagation protocol family (default: crw)")
    what.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config key, e.g. protocol.topk=5, method.layer=blocks.2 (repeatable)")
    add_common_data_flags(parser)
    weights = parser.add_argument_group("weights")
    weights.add_argument("--checkpoint", help="method checkpoint (loaded with weights_only=True)")
    weights.add_argument("--weights", help="backbone weights file for timm: methods")
    how = parser.add_argument_group("how")
    how.add_argument("--out-dir", help="where predictions and the record go (default RESULTS/runs/<task>/<method>/"
                     "<protocol>-<hash>/<run digest>/); a folder of another run is refused")
    how.add_argument("--results-dir", help="RESULTS: the results root (default $HARNESS_RESULTS, else ./results)")
    how.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    how.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    how.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"],
                     help="feature extraction precision: fp32 (strict, default), or tf32 and bf16 (CUDA only)")
    how.add_argument("--feature-cache", metavar="DIR", help="reuse features stored here by an earlier run with the "
                     "same method, checkpoint, frames and precision (protocol sweeps); store new ones")
    how.add_argument("--force", action="store_true", help="recompute instead of resuming")
    how.add_argument("--visualize", action="store_true", help="also write overlay strips")
    how.add_argument("--adapt", action="store_true", help="test-time adaptation: fine-tune on each video first")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from harness.config import RunConfig, parse_sets
    from harness.runs.runner import run

    config = RunConfig(
        method=args.method, task=args.task, data_root=args.data_root, sequences=parse_sequences(args.sequences),
        limit=args.limit, protocol=args.protocol, overrides=parse_sets(args.sets), out_dir=args.out_dir, results_dir=args.results_dir,
        checkpoint=args.checkpoint, weights=args.weights, device=args.device, force=args.force,
        visualize=args.visualize, adapt=args.adapt, seed=args.seed, precision=args.precision,
        feature_cache=args.feature_cache,
    )
    print(run(config))
    return 0

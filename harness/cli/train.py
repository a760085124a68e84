"""``harness train``: train a trainable method from raw video; the last stdout line is the final checkpoint.

Trainers are whatever methods registered with :func:`harness.registry.register_trainer`; the loop is
:func:`harness.training.loop.train`, the contract :mod:`harness.training.contract`.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from harness.cli.common import parse_sequences, positive_int
from harness.errors import HarnessError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train a trainable method from raw video",
        description="Train on a folder of videos (any container PyAV reads; Kinetics' <class>/<video>.mp4 "
        "layout as is) or of frame folders, with a named recipe. Writes the method's resumable state file, "
        "<method>-eval.pt (the evaluation-only weights, for `harness run --checkpoint`), metrics.jsonl and "
        "recipe.yaml into --out-dir; the last stdout line is the state file's path. Multi-GPU / "
        "multi-node: launch the same command with torchrun.",
        epilog="examples:\n"
        "  harness train --method METHOD --recipe RECIPE --data ~/videos --out-dir runs/demo\n"
        "  harness train --method METHOD --recipe RECIPE --data DIR --out-dir runs/demo --resume\n"
        "  torchrun --nproc-per-node 8 -m harness train --method METHOD --recipe RECIPE --data DIR --out-dir runs/big\n"
        "  harness train --method METHOD --recipe RECIPE --data DIR --out-dir runs/x --set optim.lr=1e-4 --max-steps 100\n"
        "(`harness list` marks the trainable methods; an unknown --recipe is refused with the list of the method's recipes)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_argument_group("what to train")
    what.add_argument("--method", required=True, help="trainable method (`harness list` marks them)")
    what.add_argument("--recipe", required=True, help="recipe name (one of the method's recipes) or a YAML file")
    what.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                      help="override a recipe key, e.g. optim.lr=3e-4 (repeatable)")
    what.add_argument("--data", required=True, action="append", type=Path, metavar="DIR",
                      help="folder of training videos (repeatable: the videos are pooled)")
    how = parser.add_argument_group("how")
    how.add_argument("--out-dir", required=True, type=Path, help="checkpoints, logs and the resolved recipe go here")
    how.add_argument("--max-steps", type=positive_int, metavar="N", help="stop after this many steps in all (the LR schedule is unchanged)")
    how.add_argument("--resume", action="store_true", help="continue from the state file in --out-dir exactly where it stopped")
    how.add_argument("--force", action="store_true", help="start over even if --out-dir holds a checkpoint")
    how.add_argument("--allow-data-change", action="store_true",
                     help="with --resume: continue although the training videos changed (recorded in the checkpoint)")
    how.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    how.add_argument("--seed", type=int, help="random seed (default: the recipe's)")
    how.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    evaluation = parser.add_argument_group(
        "evaluation while training",
        "every N steps and at the end, write <out-dir>/eval/step-<N>/<method>-eval.pt, evaluate it exactly as "
        "`harness run --checkpoint` would (same protocol and hash), append the score to metrics.jsonl and "
        "redraw <out-dir>/curve.svg; without --eval-data-root the shipped sample is used (a smoke number)",
    )
    evaluation.add_argument("--eval-every", type=positive_int, metavar="N", help="evaluate every N steps (off by default)")
    evaluation.add_argument("--eval-task", default="davis", help="task to evaluate on (default davis)")
    evaluation.add_argument("--eval-data-root", metavar="DIR", help="the task's data (default: as `harness run`)")
    evaluation.add_argument("--eval-sequences", metavar="A,B", help="comma-separated sequences to evaluate on")
    evaluation.add_argument("--eval-limit", type=positive_int, metavar="N", help="only the first N sequences")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from harness.registry import get_trainer
    from harness.training.loop import train
    from harness.training.options import EvalOptions, TrainOptions
    from harness.training.recipes import load_recipe

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    trainer = get_trainer(args.method).load()
    recipe = load_recipe(trainer, args.recipe, args.sets)
    if args.seed is not None:
        recipe["seed"] = args.seed
    evaluate = None
    if args.eval_every is not None:
        evaluate = EvalOptions(
            every=args.eval_every, task=args.eval_task, data_root=args.eval_data_root,
            sequences=parse_sequences(args.eval_sequences), limit=args.eval_limit, device=args.device,
        )
    elif any(v is not None for v in (args.eval_data_root, args.eval_sequences, args.eval_limit)):
        raise HarnessError("--eval-data-root/--eval-sequences/--eval-limit need --eval-every N")
    if args.allow_data_change and not args.resume:
        raise HarnessError("--allow-data-change only applies with --resume")
    options = TrainOptions(
        data=args.data, out_dir=args.out_dir, max_steps=args.max_steps, resume=args.resume,
        device=args.device, progress=not args.no_progress, force=args.force, evaluate=evaluate,
        allow_data_change=args.allow_data_change,
    )
    final = train(trainer, recipe, options)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only the first rank prints the path
        print(Path(final).resolve())
    return 0

"""``harness list``: the registered methods, tasks and protocols, one line each."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("list", help="list registered methods, tasks and protocols",
                            epilog="examples:\n  harness list\n  harness list methods --filter 'timm*'",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", choices=("methods", "tasks", "protocols", "all"), default="all")
    parser.add_argument("--filter", default="*", help="wildcard on names (e.g. 'random-*')")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from harness.engine.protocol import protocol_families, protocol_summary, resolve_protocol
    from harness.registry import get_method, get_task, list_methods, list_tasks, method_families

    if args.what in ("methods", "all"):
        print("methods:")
        for name in list_methods(args.filter):
            entry = get_method(name)
            shape = f"stride {entry.stride}, dim {entry.dim}" if entry.stride else "stride/dim per model"
            trains = " [trainable]" if entry.trainable else ""
            print(f"  {name:<24} {shape:<22} {entry.summary}{trains}")
        for prefix, example in method_families().items():
            print(f"  {prefix + '<model>':<24} {'per model':<22} {example}")
    if args.what in ("tasks", "all"):
        print("tasks:")
        for name in list_tasks(args.filter):
            entry = get_task(name)
            print(f"  {name:<24} {entry.metric:<22} {entry.summary}")
    if args.what in ("protocols", "all"):
        print("protocols (families; each task resolves its published settings):")
        for name in protocol_families():
            p = resolve_protocol(name)
            print(f"  {name:<24} hash {p.hash:<17} context {p.context}, top-{p.topk}, tau {p.temperature}, "
                  f"{p.window} r={p.radius:g}{', first frame restricted' if p.restrict_first else ''}"
                  + (f" — {protocol_summary(name)}" if protocol_summary(name) else ""))
    return 0

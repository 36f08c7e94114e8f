"""``convscope explain TOPIC [options]``: one sub-command per topic, its options generated
from the topic's :class:`~convscope.explain.explanation.Option` list."""

from __future__ import annotations

import argparse
import json
from typing import Any

from . import TOPICS, explain


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``explain`` on the ``convscope`` sub-command parsers; returns its parser."""
    parser = subparsers.add_parser(
        "explain", help="answer a question about CNNs with numbers computed on your sizes",
        description="Answer a question about CNNs with numbers the engine computes on your sizes. "
                    "Exit code 0 when every claim held, 1 when one failed, 2 for bad options.")
    topics = parser.add_subparsers(dest="topic", required=True, metavar="TOPIC")
    for topic in TOPICS.values():
        sub = topics.add_parser(topic.name, aliases=list(topic.aliases), help=topic.summary,
                                description=f"{topic.title}: {topic.summary}.")
        for o in topic.options:
            if o.parse is bool:
                sub.add_argument(o.flag, dest=o.name, action="store_true", help=o.help)
            else:
                # an option without a fixed default says in its help what it defaults to
                default = "" if o.default is None else f" (default {o.default})"
                sub.add_argument(o.flag, dest=o.name, type=o.parse, default=o.default, help=o.help + default)
        sub.add_argument("--json", action="store_true", help="print the computed facts and claims as JSON")
        sub.set_defaults(run=run, explain_topic=topic.name)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the explanation (or its JSON); 0 when every claim held, else 1."""
    topic = TOPICS[args.explain_topic]
    result = explain(topic.name, **{o.name: getattr(args, o.name) for o in topic.options})
    print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) if args.json else result.render())
    return 0 if result.ok else 1

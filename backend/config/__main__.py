"""``python -m backend.config``: the experiment schema for editors, forms and users.

``--schema`` prints the JSON Schema of :class:`~backend.config.experiment.ExperimentConfig`
(titles, descriptions from the field docstrings, defaults, enums, the ``encoder``/``reward``
unions with their ``name`` discriminators); ``--defaults [PRESET]`` prints the resolved
default experiment (of a preset) as YAML.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from backend.config.experiment import ExperimentConfig, resolve_experiment
from backend.config.presets import preset_names
from backend.utils.config_model import ConfigError


def experiment_json_schema() -> dict[str, object]:
    """The JSON Schema of the experiment file (``mode="validation"``: what a file may hold)."""
    schema = ExperimentConfig.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "YoopRL experiment"
    return schema


def main(argv: Sequence[str] | None = None) -> int:
    """Print the schema or a resolved default config; exit 2 on a bad preset name."""
    parser = argparse.ArgumentParser(prog="python -m backend.config", description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--schema", action="store_true", help="print the JSON Schema")
    group.add_argument(
        "--defaults",
        nargs="?",
        const="",
        metavar="PRESET",
        help=f"print the resolved defaults (of a preset: {', '.join(preset_names())}) as YAML",
    )
    args = parser.parse_args(argv)
    if args.schema:
        print(json.dumps(experiment_json_schema(), indent=2))
        return 0
    try:
        config = resolve_experiment(args.defaults or None)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(config.to_yaml(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

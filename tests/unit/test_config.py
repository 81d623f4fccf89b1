"""Operator settings: each default written once (the dataclass), read by from_env and the CLI's help."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from rackfit.cli import parser
from rackfit.operator.config import OperatorConfig, environment_help


def test_no_environment_is_the_field_defaults():
    assert OperatorConfig.from_env({}) == OperatorConfig()


def test_variables_override_the_defaults():
    c = OperatorConfig.from_env({"RACKFIT_METRICS_PORT": "0", "RACKFIT_REPLAN_SECONDS": "2.5",
                                 "RACKFIT_WEBHOOKS": "service", "RACKFIT_WEBHOOK_PORT": "8443",
                                 "RACKFIT_NODE_SELECTOR": ""})
    assert (c.metrics_port, c.replan_seconds, c.webhooks, c.webhook_port, c.node_selector) == (0, 2.5, "service",
                                                                                               8443, "")


def test_unknown_webhook_mode_is_refused():
    with pytest.raises(ValueError, match="allowed: off, url, service"):
        OperatorConfig.from_env({"RACKFIT_WEBHOOKS": "on"})


def test_operator_help_names_every_variable_with_its_default():
    text = parser()._subparsers._group_actions[0].choices["operator"].format_help()
    assert environment_help() in text
    default = OperatorConfig()
    for f in fields(OperatorConfig):
        (line,) = [x for x in environment_help().splitlines() if x.strip().startswith(f.metadata["env"] + ":")
                   or x.strip() == f.metadata["env"]]
        value = getattr(default, f.name)
        if value is not None:
            assert f"default {value}" in line.replace('"', ""), line


def test_readme_table_is_the_field_defaults():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(RACKFIT_[A-Z_]+)` \| ([^|]+?) \|", readme, re.MULTILINE))
    default = OperatorConfig()
    expected = {}
    for f in fields(OperatorConfig):
        value = getattr(default, f.name)
        expected[f.metadata["env"]] = "none" if value is None else f"`{value:g}`" if isinstance(value, float) \
            else f"`{json.dumps(value) if isinstance(value, list) else value}`"
    assert rows == expected

"""Each role's defaults and its meta/argument_specs.yml say the same: every default is a
documented option with the same default, and every documented default is set."""

from pathlib import Path

import pytest
import yaml

ROLES = sorted(path for path in (Path(__file__).resolve().parents[2] / "roles").iterdir() if path.is_dir())


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
def test_defaults_are_the_documented_options(role):
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    options = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert sorted(set(defaults) - set(options)) == [], "defaults without a documented option"
    documented = {name: spec["default"] for name, spec in options.items() if "default" in spec}
    assert sorted(set(documented) - set(defaults)) == [], "documented defaults that defaults/main.yml does not set"
    # a templated default (the fleet from an inventory group) is described in words instead
    plain = {name: value for name, value in defaults.items() if not (isinstance(value, str) and "{{" in value)}
    assert {name: documented.get(name) for name in plain} == plain
    assert all(name.startswith(role.name + "_") for name in options), "options are prefixed with the role's name"

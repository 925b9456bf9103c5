"""The shipped rulebooks: valid against ansible-rulebook's own schema, their conditions parse,
and the rules of the two that run the playbook are the same (one is a copy of the other)."""

import sys
from pathlib import Path

import pytest
import yaml
from ansible_rulebook import rules_parser
from ansible_rulebook.conf import settings
from ansible_rulebook.validators import Validate

RULEBOOKS = Path(__file__).resolve().parents[3] / "extensions" / "eda" / "rulebooks"


@pytest.mark.parametrize("name", sorted(path.name for path in RULEBOOKS.glob("*.yml")))
def test_the_rulebook_is_valid_and_its_conditions_parse(name, monkeypatch, ansible_env):
    # the parser looks sources up as ansible-rulebook does: ansible-galaxy, over the collection path
    monkeypatch.setattr(settings, "ansible_galaxy_path", str(Path(sys.executable).parent / "ansible-galaxy"))
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", ansible_env["ANSIBLE_COLLECTIONS_PATH"])
    data = yaml.safe_load((RULEBOOKS / name).read_text())
    Validate.rulebook(data)
    rulesets = rules_parser.parse_rule_sets(data)
    assert rulesets and all(ruleset.rules for ruleset in rulesets)


def test_the_webhook_and_controller_variants_keep_the_rules_of_rebalance():
    def rules(name):
        return yaml.safe_load((RULEBOOKS / name).read_text())[0]["rules"]
    assert rules("rebalance_alertmanager.yml") == rules("rebalance.yml")
    assert [rule["condition"] for rule in rules("rebalance_controller.yml")] == \
        [rule["condition"] for rule in rules("rebalance.yml")]

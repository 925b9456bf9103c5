"""docs/reference is what antsibull-docs makes of the code now (make docs), and the changelog
fragments build a changelog with antsibull-changelog."""

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REFERENCE = REPO / "docs" / "reference"


def generate(destination, ansible_env):
    destination.mkdir(mode=0o755)
    subprocess.run([str(BIN / "antsibull-docs"), "collection", "--use-current", "--fail-on-error", "--squash-hierarchy",
                    "--output-format", "simplified-rst", "--no-add-antsibull-docs-version", "--dest-dir", str(destination),
                    "kvmops.virt"], env=ansible_env, check=True, capture_output=True, timeout=300)


def test_the_reference_is_not_stale(ansible_env, tmp_path):
    fresh = tmp_path / "reference"
    generate(fresh, ansible_env)
    made, kept = sorted(path.name for path in fresh.iterdir()), sorted(path.name for path in REFERENCE.iterdir())
    assert made == kept, "docs/reference has other files than the code makes: run make docs"
    differ = [name for name in made if not filecmp.cmp(fresh / name, REFERENCE / name, shallow=False)]
    assert differ == [], f"docs/reference is stale ({', '.join(differ)}): run make docs"
    # every module, plugin and role has its page
    for kind, suffix in (("modules", "_module.rst"), ("inventory", "_inventory.rst"), ("filter", "_filter.rst")):
        for plugin in (REPO / "plugins" / kind).glob("*.py"):
            if plugin.name != "__init__.py":
                assert f"{plugin.stem}{suffix}" in made
    for role in (REPO / "roles").iterdir():
        assert f"{role.name}_role.rst" in made


@pytest.fixture(name="built_changelog", scope="module")
def built_changelog_fixture(tmp_path_factory):
    """CHANGELOG.rst as antsibull-changelog releases the fragments (in a copy: a release
    consumes them), its words joined by single spaces."""
    copy = tmp_path_factory.mktemp("collection")
    shutil.copy(REPO / "galaxy.yml", copy)
    shutil.copytree(REPO / "changelogs", copy / "changelogs")
    changelog = BIN / "antsibull-changelog"
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    subprocess.run([str(changelog), "lint"], cwd=copy, env=env, check=True, capture_output=True, timeout=120)
    subprocess.run([str(changelog), "release", "--version", "0.1.0", "--date", "2026-11-21"], cwd=copy, env=env,
                   check=True, capture_output=True, timeout=120)
    return " ".join((copy / "CHANGELOG.rst").read_text().replace("``", "").split())


@pytest.mark.parametrize("fragment", sorted((REPO / "changelogs" / "fragments").glob("*.yml")), ids=lambda path: path.name)
def test_each_fragment_reaches_the_changelog(fragment, built_changelog):
    for section in yaml.safe_load(fragment.read_text()).values():
        for entry in section if isinstance(section, list) else [section]:
            words = " ".join(entry.replace("``", "").split()[:6])
            assert words in built_changelog, f"{fragment.name}: {entry[:80]!r} is not in CHANGELOG.rst"

"""The collection on every ansible-core that meta/runtime.yml claims.

Each core has a locked venv of its own (requirements/core-2.1N.lock, built by 'make cores'
under .build/cores). In each, the modules' unit tests run on libvirt's test driver
(in-process and through ``ansible`` and ``ansible-playbook``), and the inventory plugin's
unit tests run through ``ansible-inventory`` and ``ansible-playbook``, including a guest tag
holding ``{{ lookup('pipe', ...) }}`` that must never be templated: before 2.19 the plugin
marks guest strings with ``wrap_var``, from 2.19 on with the trust model; both paths run here.
"""

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from locks import CORES, REPO

CORE_VENVS = REPO / ".build" / "cores"
SUITES = ("tests/unit/plugins/modules", "tests/unit/plugins/inventory")
_SUMMARY = re.compile(r"^=* ?(\d+ passed.*?) in [\d.]+s", re.MULTILINE)


def _run_suites(core, basetemp):
    python = CORE_VENVS / core / "bin" / "python"
    version = subprocess.run([str(python), "-c", "import ansible; print(ansible.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    done = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(basetemp),
                           *SUITES], cwd=REPO, env=os.environ, capture_output=True, text=True, timeout=900, check=False)
    return version, done


@pytest.fixture(name="core_runs", scope="module")
def core_runs_fixture(tmp_path_factory):
    """Every core's run, two at a time (this machine has two cores)."""
    missing = [core for core in CORES if not (CORE_VENVS / core / ".installed").exists()]
    if missing:
        pytest.fail(f"no venv for ansible-core {', '.join(missing)} under {CORE_VENVS}: run 'make cores'")
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = pool.map(lambda core: _run_suites(core, tmp_path_factory.mktemp(f"core-{core}")), CORES)
        return dict(zip(CORES, runs))


@pytest.mark.parametrize("core", CORES)
def test_the_modules_and_the_inventory_plugin_pass_on(core, core_runs, figures):
    version, done = core_runs[core]
    assert version.startswith(core + "."), f"the {core} venv runs ansible-core {version}"
    summary = _SUMMARY.search(done.stdout)
    figures(f"unit tests of modules and inventory on ansible-core {version}",
            summary.group(0).strip("= ") if summary else "no summary")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert summary and "failed" not in summary.group(1) and "skipped" not in summary.group(1), done.stdout[-3000:]


def test_the_claim_and_the_proof_agree():
    """requires_ansible's lower bound is the oldest core tested; the Makefile builds the same cores."""
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    assert runtime["requires_ansible"] == f">={CORES[0]}.0"
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^CORES := (.*)$", makefile, re.MULTILINE).group(1).split() == list(CORES)

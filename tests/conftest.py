"""Shared test setup: where the collection is, and figures worth printing.

``make test`` installs the built tarball and points KVMOPS_COLLECTIONS_PATH at it, so
both the Python imports and the ansible commands in the tests use exactly what ships.
Run pytest directly and they use the source tree instead, through a symlink.
"""

import contextlib
import importlib
import io
import json
import os
import runpy
import socket
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the lab package

from lab.collection import ansible_environment, collections_path  # noqa: E402  (needs sys.path above)

COLLECTIONS_PATH = collections_path()
sys.path.insert(0, str(COLLECTIONS_PATH))

from module_args import forget_warnings, patch_module_args, warning_texts  # noqa: E402  (needs sys.path above)

_FIGURES = []


def run_module(name, args, check=False, diff=True):
    """The result dict of kvmops.virt.<name> with ``args``; failures come back with failed=True."""
    module = importlib.import_module(f"ansible_collections.kvmops.virt.plugins.modules.{name}")
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    output = io.StringIO()
    forget_warnings()
    with patch_module_args(args), contextlib.redirect_stdout(output), pytest.raises(SystemExit):
        module.main()
    result = json.loads(output.getvalue())
    result["warnings"] = warning_texts(result.get("warnings", []))
    return result


@pytest.fixture(name="run_module", scope="session")
def run_module_fixture():
    return run_module


EDA_PLUGINS = COLLECTIONS_PATH / "ansible_collections" / "kvmops" / "virt" / "extensions" / "eda" / "plugins"


@pytest.fixture(name="eda_plugin", scope="session")
def eda_plugin_fixture():
    """eda_plugin("event_filter/alertmanager"): the plugin's globals, loaded from the installed
    collection the way ansible-rulebook loads it (runpy.run_path): fresh state on each call."""
    return lambda name: runpy.run_path(str(eda_plugin_path(name)))


def eda_plugin_path(name):
    """The installed file of an EDA plugin ("event_source/host_load")."""
    return EDA_PLUGINS / (name + ".py")


@pytest.fixture(name="eda_plugin_path", scope="session")
def eda_plugin_path_fixture():
    return eda_plugin_path


@pytest.fixture(scope="session")
def figures():
    """Call figures(label, text) to have a measurement printed at the end of the run."""
    return lambda label, text: _FIGURES.append((label, text))


@pytest.fixture
def closed_port():
    """A loopback TCP port that nobody listens on (bound once, then released)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


@pytest.fixture
def silent_listener():
    """A TCP port on loopback that accepts connections and never says a word."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except socket.timeout:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


@pytest.fixture(scope="session")
def ansible_env():
    """Environment for ansible commands that must find this collection and nothing stale."""
    return ansible_environment(os.environ, [COLLECTIONS_PATH], ANSIBLE_HOST_KEY_CHECKING="false")


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("measured")
        for label, text in _FIGURES:
            terminalreporter.write_line(f"{label:<48} {text}")

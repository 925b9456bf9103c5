"""Make docs/images/rebalance-report.png: the report of the sample rebalance the chromium
test renders, as headless chromium draws it. Run from the repository root after `make install`:

    .venv/bin/python tests/utils/report_screenshot.py
"""

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the lab package
sys.path.insert(0, str(ROOT / "tests" / "unit" / "plugins" / "filter"))

from lab.collection import collections_path  # noqa: E402

sys.path.insert(0, str(collections_path()))

from ansible_collections.kvmops.virt.plugins.module_utils.rebalance_report import render  # noqa: E402
from test_rebalance_report import role_result  # noqa: E402


def main():
    target = ROOT / "docs" / "images" / "rebalance-report.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir:
        page = Path(workdir) / "report.html"
        page.write_text(render(role_result(), cpu_high=60, memory_high=90, title="Rebalance hotspot", now=1795000000))
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--screenshot={target}", "--window-size=1000,900", page.as_uri()], check=True)
    print(target)


if __name__ == "__main__":
    main()

"""The rebalance report rendered by a real browser (Debian's chromium, headless): the page
lays out as meant - bars as wide as their percentages, the limit where it belongs, the
tables visible - and chromium takes a screenshot of it (docs/images/rebalance-report.png is
one, made by tests/utils/report_screenshot.py).

The report itself runs no script; to read the layout, the test appends one to its own copy
of the page, which writes the measured geometry into the DOM that chromium dumps."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.rebalance_report import render

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "plugins" / "filter"))
from test_rebalance_report import role_result  # pylint: disable=wrong-import-position,import-error

CHROMIUM = shutil.which("chromium")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "rebalance-report.png"
MEASURE = """<script>
const rows = [...document.querySelectorAll('.host')].map(row => {
  const tracks = row.querySelectorAll('.track');
  const width = tracks[0].getBoundingClientRect().width;
  const share = el => el ? el.getBoundingClientRect().width / width : null;
  const limit = tracks[0].querySelector('.limit');
  return {host: row.dataset.host, metric: row.dataset.metric, before: share(tracks[0].querySelector('.before')),
          after: share(tracks[1].querySelector('.after')),
          limit: limit ? (limit.getBoundingClientRect().left - tracks[0].getBoundingClientRect().left) / width : null,
          hot: row.classList.contains('hot'), visible: row.getBoundingClientRect().height > 0};
});
const tables = [...document.querySelectorAll('table')].map(t => t.getBoundingClientRect().height);
document.body.setAttribute('data-measured', JSON.stringify({rows, tables, text: document.body.innerText}));
</script>"""

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (bindep test profile)")


def chromium(*arguments, timeout=120):
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--disable-extensions", *arguments],
                          capture_output=True, text=True, timeout=timeout, check=True).stdout


def test_the_report_lays_out_as_meant_in_chromium(tmp_path):
    page = render(role_result(), cpu_high=60, memory_high=90, title="Rebalance hotspot", now=1795000000)
    measured_page = tmp_path / "measured.html"
    measured_page.write_text(page.replace("</body>", MEASURE + "</body>"))
    dom = chromium("--virtual-time-budget=2000", "--dump-dom", measured_page.as_uri())
    found = re.search(r'data-measured="([^"]*)"', dom)
    assert found, dom[:2000]
    measured = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                          .replace("&gt;", ">"))
    rows = {(row["host"], row["metric"]): row for row in measured["rows"]}
    kvm1 = rows[("kvm1", "CPU")]
    assert kvm1["visible"] and abs(kvm1["before"] - 0.80) < 0.02 and abs(kvm1["after"] - 0.385) < 0.02, kvm1
    assert abs(kvm1["limit"] - 0.60) < 0.02 and not kvm1["hot"], kvm1
    assert abs(rows[("kvm2", "CPU")]["after"] - 0.385) < 0.02 and rows[("kvm2", "CPU")]["before"] < 0.01
    assert all(height > 20 for height in measured["tables"]), measured["tables"]
    text = measured["text"]
    assert "1 of 1 planned guest(s) moved; all 1 waves ran" in text
    assert re.search(r"web-1\s+kvm1\s+kvm2\s+relieve kvm1", text), text

    # the screenshot for the docs, from the page as shipped (no measuring script)
    shipped = tmp_path / "report.html"
    shipped.write_text(page)
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1000,900", shipped.as_uri())
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(header[16:20], "big") == 1000
    # docs/images/rebalance-report.png is such a screenshot (python tests/utils/report_screenshot.py)
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

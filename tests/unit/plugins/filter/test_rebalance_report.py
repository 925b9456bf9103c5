"""The rebalance report: a self-contained page (nothing fetched, no scripts) with the loads
before and after, the moves and their outcome, what blocked the rest, and every guest-supplied
string escaped; written by the filter (in a real ansible run: importing ansible's controller
code here would change how later tests see module warnings) and by rebalance_plan's report
option."""

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

from ansible_collections.kvmops.virt.plugins.module_utils.placement.planner import plan
from ansible_collections.kvmops.virt.plugins.module_utils.rebalance_report import render

HOSTILE = '<img src=x onerror="alert(1)">'


class Page(HTMLParser):
    """Tags, attributes and text of a page."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.attributes, self.text = [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend(attrs)

    def handle_data(self, data):
        self.text.append(data)

    def words(self):
        return re.sub(r"\s+", " ", " ".join(self.text))


def role_result():
    snapshot = dict(hosts=[dict(name="kvm1", cpus=2, memory_mb=4096), dict(name="kvm2", cpus=2, memory_mb=4096)],
                    guests=[dict(name="web-1", host="kvm1", cpu_cores=0.8, memory_mb=256),
                            dict(name=HOSTILE, host="kvm1", cpu_cores=0.8, memory_mb=256, tags=dict(migratable=False))])
    first = plan(snapshot, "hotspot", cpu_high=60, cpu_low=20)
    # as measured after the move: what was planned, give or take
    after = [dict(host, cpu_percent=host["cpu_planned_percent"] - 1.5) for host in first["hosts_after"]]
    return dict(policy="hotspot", dry_run=False, plan=first["plan"], summary=first["summary"], hosts_before=first["hosts_before"],
                hosts_planned=first["hosts_after"], hosts_after=after, unresolved=first["unresolved"],
                moved=[dict(first["plan"][0], wave=1, elapsed_ms=2400, downtime_ms=12)], failures=[], waves_run=1,
                stopped="all 1 waves ran", growth=[], growth_refused=[], grown=[], grow_failures=[])


def test_the_role_result_becomes_a_page_with_loads_moves_and_reasons():
    result = role_result()
    page_text = render(result, cpu_high=60, memory_high=90)
    page = Page(page_text)
    words = page.words()
    assert "1 of 1 planned guest(s) moved; all 1 waves ran" in words
    assert "Host load, before and after" in words and "CPU 80.0 % → 38.5 % · guests 2 → 1" in words
    assert re.search(r"web-1 kvm1 kvm2 relieve kvm1: CPU 80% above cpu_high 60% [\d.]+ s moved in 2.4 s", words), words
    assert "migrations 1, 2.4 s in all, longest 2.4 s" in words
    # the host bars: one CPU and one memory row per host, the CPU limit drawn at 60 %
    assert page_text.count('data-metric="CPU"') == 2 and page_text.count('data-metric="memory"') == 2
    assert 'class="limit" style="left:60.0%"' in page_text


def test_guest_supplied_names_are_text_and_nothing_is_fetched():
    result = role_result()
    result["unresolved"] = [dict(host="kvm1", problem="CPU 80% above cpu_high 60%",
                                 guests=[dict(guest=HOSTILE, reason="tagged migratable=false")], reason="1 pinned")]
    page_text = render(result)
    page = Page(page_text)
    assert "img" not in page.tags and "script" not in page.tags and "link" not in page.tags
    assert not [name for name, _value in page.attributes if name in ("src", "href", "onerror")]
    assert HOSTILE in page.words()  # shown as text
    assert "http://" not in page_text and "https://" not in page_text and "url(" not in page_text


def test_a_plan_alone_says_so_and_shows_the_planned_loads(tmp_path, run_module):
    path = tmp_path / "plan.html"
    snapshot = dict(hosts=[dict(name="a", cpus=2, memory_mb=4096), dict(name="b", cpus=2, memory_mb=4096)],
                    guests=[dict(name="g1", host="a", cpu_cores=1.0, memory_mb=512),
                            dict(name="g2", host="a", cpu_cores=0.9, memory_mb=512)])
    checked = run_module("rebalance_plan", dict(snapshot=snapshot, cpu_high=60, report=str(path)), check=True)
    assert "report" not in checked and not path.exists()
    result = run_module("rebalance_plan", dict(snapshot=snapshot, cpu_high=60, report=str(path)))
    assert result["report"] == str(path) and result["changed"] is False
    words = Page(path.read_text()).words()
    assert "A plan only: nothing was moved; the loads after are the planned ones." in words
    assert "Host load, before and as planned" in words and "planned" in words
    assert "What blocked moves Nothing: no problem was left." in words


def test_a_failed_move_and_growth_show_as_such():
    result = role_result()
    result["failures"], result["moved"] = [dict(result["plan"][0], wave=1, error="aborted after 3 s (timeout)")], []
    result["stopped"] = "a migration failed in wave 1"
    result["grown"] = [dict(guest="db-1", host="kvm1", vcpus=2, vcpus_from=1, memory_mb=256.0, memory_mb_from=256.0,
                            reason="no move relieves kvm1; CPU 100% of 1 vCPUs (at least 90%)")]
    words = Page(render(result)).words()
    assert "failed: aborted after 3 s (timeout)" in words and "a migration failed in wave 1" in words
    assert "Grown in place db-1 kvm1 1 → 2 256 → 256 MiB" in words.replace("guest host vCPUs memory reason ", "")


def filter_in_ansible(ansible_env, tmp_path, value, arguments=""):
    """(rc, output) of an ad-hoc ansible run that applies the filter to ``value``."""
    (tmp_path / "value.json").write_text(json.dumps(dict(value=value)))
    done = subprocess.run([str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "ansible.builtin.copy",
                           "-a", json.dumps(dict(content="{{ value | kvmops.virt.rebalance_report(%s) }}" % arguments,
                                                 dest=str(tmp_path / "page.html"), mode="0600")),
                           "-e", "@" + str(tmp_path / "value.json")], env=ansible_env, capture_output=True, text=True,
                          timeout=120, check=False)
    return done.returncode, done.stdout + done.stderr


def test_the_filter_in_a_real_ansible_run(ansible_env, tmp_path):
    rc, output = filter_in_ansible(ansible_env, tmp_path, role_result(), "cpu_high=60, title='Nightly'")
    assert rc == 0, output
    page = (tmp_path / "page.html").read_text()
    assert "<title>Nightly</title>" in page and 'class="limit" style="left:60.0%"' in page


def test_anything_but_a_result_is_refused(ansible_env, tmp_path):
    rc, output = filter_in_ansible(ansible_env, tmp_path, ["not", "a", "result"])
    assert rc != 0 and "rebalance_report needs rebalance_result or a rebalance_plan result" in output, output


def test_an_unwritable_report_path_fails_with_the_reason_and_the_plan(tmp_path, run_module):
    snapshot = dict(hosts=[dict(name="a", cpus=2, memory_mb=4096)], guests=[])
    result = run_module("rebalance_plan", dict(snapshot=snapshot, report=str(tmp_path / "missing" / "plan.html")))
    assert result["failed"] and result["msg"].startswith(f"cannot write the report to {tmp_path / 'missing' / 'plan.html'}: ")
    assert "No such file or directory" in result["msg"] and result["plan"] == []

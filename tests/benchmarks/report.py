"""The benchmark's table: medians per scenario and contender, as text and as markdown."""

import statistics
from dataclasses import dataclass, field

COLUMNS = ("scenario", "contender", "wall s (median)", "wall min-max", "peak RSS MiB", "hosts / groups",
           "x floor (wall)", "x community (wall / RSS)", "note")


@dataclass
class Result:
    """What one contender did in one scenario."""

    scenario: str
    contender: str  # a contenders.CONTENDERS key
    label: str
    runs: list = field(default_factory=list)  # measurement.Run, the timed ones
    hosts: int = None
    groups: int = None
    status: str = "ok"  # ok | failed | hung | skipped
    note: str = ""
    floor_key: str = None  # scenario whose static floor this one is compared with

    @property
    def measured(self):
        return self.status == "ok" and bool(self.runs)

    @property
    def wall(self):
        return statistics.median(run.seconds for run in self.runs) if self.measured else None

    @property
    def rss(self):
        return statistics.median(run.max_rss_mib for run in self.runs) if self.measured else None


def _ratio(value, reference):
    if value is None or not reference:
        return "-"
    return f"{value / reference:.2f}"


def rows(results):
    """The table's rows (lists of strings), in the order results were produced."""
    by_key = {(result.scenario, result.contender): result for result in results}
    table = []
    for result in results:
        floor = by_key.get((result.floor_key or result.scenario, "static"))
        community = by_key.get((result.scenario, "community"))
        if result.measured:
            walls = [run.seconds for run in result.runs]
            wall, spread, rss = f"{result.wall:.2f}", f"{min(walls):.2f}-{max(walls):.2f}", f"{result.rss:.0f}"
        else:
            wall, spread, rss = result.status, "-", "-"
        hosts = "-" if result.hosts is None else f"{result.hosts} / {result.groups}"
        versus_floor = _ratio(result.wall, floor.wall if floor and floor is not result else None)
        if community and community.measured and result.measured:
            versus_community = f"{_ratio(result.wall, community.wall)} / {_ratio(result.rss, community.rss)}"
        else:
            versus_community = "-"
        table.append([result.scenario, result.label, wall, spread, rss, hosts, versus_floor, versus_community,
                      result.note])
    return table


def text_table(results):
    table = [list(COLUMNS)] + rows(results)
    widths = [max(len(row[column]) for row in table) for column in range(len(COLUMNS) - 1)]
    lines = []
    for number, row in enumerate(table):
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths) + "  ----")
    return "\n".join(lines)


def _markdown_cell(text):
    return text.replace("|", "\\|")


def markdown_table(results):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] * len(COLUMNS)) + "|"]
    for row in rows(results):
        lines.append("| " + " | ".join(_markdown_cell(cell) for cell in row) + " |")
    return "\n".join(lines)

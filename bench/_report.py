"""
Turning per-round figures into the Markdown table, the reStructuredText
tables the docs page includes, the raw JSON and the PNG chart.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: The direct workloads: key, column title, unit, whether higher is better.
WORKLOADS: tuple[tuple[str, str, str, bool], ...] = (
    ("bulk", "bulk", "MB/s", True),
    ("pingpong", "ping-pong", "round trips/s", True),
    ("connrate", "connection rate", "connections/s", True),
    ("idle", "idle memory", "KiB/connection", False),
)
#: The proxy workloads.
PROXY_WORKLOADS: tuple[tuple[str, str, str, bool], ...] = (
    ("bulk", "bulk", "MB/s", True),
    ("pingpong", "ping-pong", "round trips/s", True),
)
#: The proxy workloads again with every process unpinned, when the run pins
#: them: a proxy's latency depends on where the kernel places three
#: processes, which one CPU hides.
PROXY_FREE_WORKLOADS: tuple[tuple[str, str, str, bool], ...] = (
    ("bulk-free", "bulk, unpinned", "MB/s", True),
    ("pingpong-free", "ping-pong, unpinned", "round trips/s", True),
)


@dataclasses.dataclass
class Series:
    """The figures of one contender on one workload, one per round (C{None}: failed)."""

    values: list[float | None] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Table:
    """Rows (contenders or proxies) by workloads, and what is skipped."""

    baseline: str
    rows: list[tuple[str, str]]  # (name, label)
    workloads: Sequence[tuple[str, str, str, bool]]
    series: dict[tuple[str, str], Series] = dataclasses.field(default_factory=dict)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)

    def get(self, row: str, workload: str) -> Series:
        """The series of C{row} on C{workload} (created empty if new)."""
        return self.series.setdefault((row, workload), Series())

    def ratios(self, row: str, workload: str) -> list[float]:
        """C{row}'s figure over the baseline's, for each round where both exist."""
        mine = self.get(row, workload).values
        base = self.get(self.baseline, workload).values
        return [m / b for m, b in zip(mine, base, strict=False) if m is not None and b]

    def to_json(self) -> dict[str, Any]:
        """Everything, for the raw results file."""
        return {
            "baseline": self.baseline,
            "rows": [{"name": n, "label": label} for n, label in self.rows],
            "skipped": self.skipped,
            "figures": {
                f"{row}/{w}": {"values": s.values, "errors": s.errors}
                for (row, w), s in self.series.items()
            },
        }


def table_from_json(data: dict[str, Any], workloads: Sequence[tuple[str, str, str, bool]]) -> Table:
    """A L{Table} back from what L{Table.to_json} wrote."""
    table = Table(data["baseline"], [(r["name"], r["label"]) for r in data["rows"]], workloads)
    table.skipped = dict(data["skipped"])
    for key, fig in data["figures"].items():
        row, workload = key.split("/", 1)
        table.series[(row, workload)] = Series(list(fig["values"]), list(fig["errors"]))
    keys = {w for _, w in table.series}
    table.workloads = [w for w in workloads if w[0] in keys]
    return table


def _fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def summary(values: Sequence[float]) -> str:
    """Median and min-max, as C{"123 (110-130)"}; C{"-"} when empty."""
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return _fmt(med)
    return f"{_fmt(med)} ({_fmt(min(values))}-{_fmt(max(values))})"


def cells(table: Table, row: str) -> list[str]:
    """The cells of one row: for each workload, the figure and the ratio."""
    if row in table.skipped:
        return [f"skipped: {table.skipped[row]}"] + [""] * (2 * len(table.workloads) - 1)
    out: list[str] = []
    for key, _, _, _ in table.workloads:
        s = table.get(row, key)
        got = [v for v in s.values if v is not None]
        if not got and s.errors:
            out += [f"failed: {s.errors[-1][:200]}", ""]
            continue
        figure = summary(got)
        if s.errors:
            figure += f" ({len(s.errors)} failed)"
        out += [figure, "1" if row == table.baseline else summary(table.ratios(row, key))]
    return out


def headers(table: Table, first: str, versus: str) -> list[str]:
    """Column titles."""
    out = [first]
    for _, title, unit, higher in table.workloads:
        better = "higher" if higher else "lower"
        out += [f"{title} ({unit})", f"{title} x {versus} ({better} is better)"]
    return out


def markdown_table(table: Table, first: str, versus: str) -> str:
    """The table in Markdown."""

    def esc(cell: str) -> str:
        return cell.replace("|", "\\|").replace("\n", " ")

    head = headers(table, first, versus)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, label in table.rows:
        lines.append("| " + " | ".join(esc(c) for c in [label, *cells(table, name)]) + " |")
    return "\n".join(lines)


def rst_table(table: Table, first: str, versus: str, caption: str) -> str:
    """The table as a reStructuredText C{csv-table}."""

    def quote(cell: str) -> str:
        return '"' + cell.replace('"', '""').replace("\n", " ") + '"'

    head = headers(table, first, versus)
    lines = [
        f".. csv-table:: {caption}",
        "   :header: " + ", ".join(quote(h) for h in head),
        "",
    ]
    for name, label in table.rows:
        lines.append("   " + ", ".join(quote(c) for c in [label, *cells(table, name)]))
    return "\n".join(lines)


_TXTCP = "#d9822b"
_OTHER = "#4a7ab7"


def write_chart(path: Path, direct: Table, proxies: Table) -> None:
    """Bar charts of the ratios (median, min-max whiskers), one panel per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(direct, w, "raw Twisted") for w in direct.workloads]
    panels += [(proxies, w, "direct") for w in proxies.workloads]
    columns = max(3, (len(panels) + 1) // 2)
    fig, axes = plt.subplots(2, columns, figsize=(5.4 * columns, 9))
    for ax, (table, (key, title, _, higher), versus) in zip(axes.flat, panels, strict=False):
        labels: list[str] = []
        meds: list[float] = []
        lows: list[float] = []
        highs: list[float] = []
        for name, label in table.rows:
            ratios = [1.0] if name == table.baseline else table.ratios(name, key)
            if name in table.skipped or not ratios or not table.get(name, key).values:
                continue
            med = statistics.median(ratios)
            labels.append(label)
            meds.append(med)
            lows.append(med - min(ratios))
            highs.append(max(ratios) - med)
        ys = range(len(labels))
        colors = [
            _TXTCP if label.startswith(("txtcp", "twistd -n tcp-proxy")) else _OTHER
            for label in labels
        ]
        ax.barh(ys, meds, xerr=[lows, highs], color=colors, ecolor="#333333", capsize=3)
        ax.set_yticks(list(ys), labels, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(1.0, color="#b03030", linewidth=1)
        better = "higher" if higher else "lower"
        ax.set_title(f"{title}: \u00d7 {versus}\n({better} is better)", fontsize=10)
        for y, m, h in zip(ys, meds, highs, strict=False):
            ax.text(m + h, y, f"  {m:.2f}", va="center", fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(
        "txtcp (orange) and its peers: ratios computed round by round; "
        "bar = median, whiskers = min-max",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_json(path: Path, meta: dict[str, Any], direct: Table, proxies: Table) -> None:
    """The raw per-round figures and the run's description."""
    path.write_text(
        json.dumps({"meta": meta, "direct": direct.to_json(), "proxy": proxies.to_json()}, indent=1)
        + "\n"
    )

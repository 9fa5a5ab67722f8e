"""
The benchmark suite (bench/): its quick mode runs end to end and produces
the tables, the chart and the raw figures; a missing contender or proxy is
reported as skipped with a hint, never dropped.  Nothing here asserts how
fast anything is.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import _report  # noqa: E402
from bench._contenders import CONTENDERS, PROXIES  # noqa: E402
from bench._run import rotated  # noqa: E402

#: The quick run is a few dozen short-lived processes; the machine may be busy.
QUICK_TIMEOUT = 300

DIRECT_COLUMNS = [
    "contender",
    "bulk (MB/s)",
    "bulk x raw Twisted (higher is better)",
    "ping-pong (round trips/s)",
    "ping-pong x raw Twisted (higher is better)",
    "connection rate (connections/s)",
    "connection rate x raw Twisted (higher is better)",
    "idle memory (KiB/connection)",
    "idle memory x raw Twisted (lower is better)",
]
PROXY_COLUMNS = [
    "proxy",
    "bulk (MB/s)",
    "bulk x direct (higher is better)",
    "ping-pong (round trips/s)",
    "ping-pong x direct (higher is better)",
]
FIGURE = re.compile(r"^[\d,.]+( \([\d,.]+-[\d,.]+\))?$")


def run_bench(
    args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run C{python -m bench ARGS} from the repository root, with a timeout."""
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=QUICK_TIMEOUT,
        check=False,
    )


def parse_table(markdown: str, first_column: str) -> tuple[list[str], dict[str, list[str]]]:
    """The header and the rows (by first cell) of the table whose header starts so."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    header = [c.strip() for c in lines[start].strip("|").split(" | ")]
    assert set(lines[start + 1]) <= set("|-")
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        row = [c.strip() for c in re.split(r"(?<!\\) \| ", line.strip().strip("|"))]
        row[0] = row[0].strip()
        rows[row[0]] = row
    return header, rows


@pytest.fixture(scope="module")
def quick(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One C{python -m bench --quick --out DIR} run, shared by the tests below."""
    out = tmp_path_factory.mktemp("bench")
    return run_bench(["--quick", "--out", str(out)]), out


def test_quick_runs(quick: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """The quick mode exits 0 and prints the report with its run description."""
    done, _ = quick
    assert done.returncode == 0, done.stderr[-3000:]
    for field in ("Date", "Machine", "Versions", "Command", "Sizes", "Layout"):
        assert f"- {field}: " in done.stdout
    assert "`python -m bench --quick --out " in done.stdout
    assert "FAILED" not in done.stderr, done.stderr[-3000:]


def test_direct_table(quick: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """The direct table has every workload's columns and one row per contender, measured."""
    done, _ = quick
    header, rows = parse_table(done.stdout, "contender")
    assert header == DIRECT_COLUMNS
    assert list(rows) == [c.label for c in CONTENDERS]
    for label, row in rows.items():
        assert len(row) == len(DIRECT_COLUMNS), row
        if row[1].startswith("skipped: "):
            continue  # a layer not importable here is reported, with the reason
        for cell in row[1:]:
            assert FIGURE.match(cell), (label, cell)
    assert rows["raw Twisted protocols"][2::2] == ["1"] * 4


def test_proxy_table(quick: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """The proxy table has bulk and ping-pong columns and one row per proxy."""
    done, _ = quick
    header, rows = parse_table(done.stdout, "proxy")
    assert header == PROXY_COLUMNS
    assert list(rows) == [p.label for p in PROXIES]
    for label, row in rows.items():
        assert len(row) == len(PROXY_COLUMNS), row
        if row[1].startswith("skipped: "):
            assert "install" in row[1] or "importable" in row[1], row
            continue
        for cell in row[1:]:
            assert FIGURE.match(cell), (label, cell)


def test_files_written(quick: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """--out gets the Markdown report, the rst include, the raw JSON and a PNG chart."""
    done, out = quick
    assert (out / "benchmarks.md").read_text() == done.stdout
    inc = (out / "benchmarks-results.inc").read_text()
    assert inc.count(".. csv-table::") == 2
    assert ":Command: ``python -m bench --quick" in inc
    raw = json.loads((out / "benchmarks.json").read_text())
    assert raw["direct"]["baseline"] == "twisted"
    assert raw["proxy"]["baseline"] == "direct"
    assert len(raw["direct"]["figures"]["txtcp/bulk"]["values"]) == 1
    png = (out / "_static" / "benchmarks.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_report_again_from_json(
    quick: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path
) -> None:
    """--from-json writes the same report from the raw figures, measuring nothing."""
    _, out = quick
    done = run_bench(["--from-json", str(out / "benchmarks.json"), "--out", str(tmp_path)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "round 1/" not in done.stderr
    for name in ("benchmarks.md", "benchmarks-results.inc", "benchmarks.json"):
        assert (tmp_path / name).read_text() == (out / name).read_text()
    assert (tmp_path / "_static" / "benchmarks.png").exists()


def test_quick_writes_nothing_by_default() -> None:
    """Without --out, the quick mode leaves the docs alone (checked through --help)."""
    done = run_bench(["--help"])
    assert done.returncode == 0
    assert "with --quick, none" in " ".join(done.stdout.split())


def test_missing_peers_are_skipped_with_a_hint(tmp_path: Path) -> None:
    """A contender that cannot import and proxies not installed are rows that say why and how."""
    hidden = tmp_path / "hidden"
    (hidden / "thor").mkdir(parents=True)
    (hidden / "thor" / "__init__.py").write_text('raise ImportError("hidden for the test")\n')
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(hidden), str(ROOT)])
    env["PATH"] = str(Path(sys.executable).parent)  # no socat, no haproxy
    done = run_bench(
        [
            "--quick",
            "--only",
            "pingpong,proxy",
            "--contenders",
            "txtcp,thor",
            "--layout",
            "one-cpu",
        ],
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    header, rows = parse_table(done.stdout, "contender")
    assert header == [
        "contender",
        "ping-pong (round trips/s)",
        "ping-pong x raw Twisted (higher is better)",
    ]
    assert list(rows) == ["txtcp core", "raw Twisted protocols", "thor"]
    assert rows["thor"][1] == (
        "skipped: cannot import thor (ImportError: hidden for the test); "
        'install the bench extra: pip install -e ".[bench]"'
    )
    assert FIGURE.match(rows["txtcp core"][1])
    header, proxies = parse_table(done.stdout, "proxy")
    # Pinned to one CPU, the proxies are measured unpinned as well.
    assert header == [
        *PROXY_COLUMNS,
        "bulk, unpinned (MB/s)",
        "bulk, unpinned x direct (higher is better)",
        "ping-pong, unpinned (round trips/s)",
        "ping-pong, unpinned x direct (higher is better)",
    ]
    for name in ("socat", "haproxy"):
        (row,) = [r for label, r in proxies.items() if label.startswith(name)]
        assert (
            row[1] == f"skipped: {name} is not installed; install {name}: apt-get install -y {name}"
        )
    assert all(FIGURE.match(cell) for cell in proxies["twistd -n tcp-proxy (txtcp)"][1:])


def test_ratios_round_by_round() -> None:
    """Ratios pair each round's figure with the baseline's of the same round; failures drop out."""
    table = _report.Table("base", [("base", "Base"), ("x", "X")], _report.WORKLOADS[:1])
    table.get("base", "bulk").values = [100.0, 200.0, 50.0]
    table.get("x", "bulk").values = [110.0, None, 40.0]
    table.get("x", "bulk").errors = ["boom"]
    assert table.ratios("x", "bulk") == [1.1, 0.8]
    assert _report.cells(table, "x") == ["75.0 (40.0-110) (1 failed)", "0.95 (0.80-1.10)"]
    assert _report.cells(table, "base") == ["100 (50.0-200)", "1"]


def test_summary_and_rotation() -> None:
    """Cells show the median and min-max; each round starts with the next contender."""
    assert _report.summary([]) == "-"
    assert _report.summary([3.0]) == "3.00"
    assert _report.summary([1000.0, 3000.0, 2000.0]) == "2,000 (1,000-3,000)"
    assert rotated(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert rotated(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert rotated(["a", "b", "c"], 5) == ["c", "a", "b"]

"""``make bench-peers`` (experiments/benchmarks/peers.py) without RecBole: process
measurement, the metric check, the README section and the one-line skips. The real
comparison is the benchmark's own output, not a test."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from experiments.benchmarks import peers
from experiments.benchmarks.readme import PEERS_BEGIN, PEERS_END, with_section, write_readme


def test_measure_sees_the_peak_of_a_child_process(tmp_path) -> None:
    code = "import time; x = b'x' * (300 << 20); time.sleep(0.5)"  # 300 MB, touched
    wall, peak = peers.measure([sys.executable, "-c", code], {}, tmp_path, tmp_path / "log")
    assert peak > 250 << 20 and wall > 0


def test_metrics_agree_to_six_decimals() -> None:
    a = dict.fromkeys(peers.METRICS, 0.2140734)
    assert peers.agree(a, dict.fromkeys(peers.METRICS, 0.214073))
    assert not peers.agree(a, {**a, "mrr": 0.214075})


def test_section_is_replaced_between_markers_and_kept_by_make_bench(tmp_path) -> None:
    doc = "# t\n\nintro\n\n## How the numbers are taken\n\nnotes\n"
    first = with_section(doc, f"{PEERS_BEGIN}\nA\n{PEERS_END}")
    assert first.index("A") < first.index("## How the numbers") and "intro" in first
    second = with_section(first, f"{PEERS_BEGIN}\nB\n{PEERS_END}")
    assert "B" in second and "\nA\n" not in second and second.count(PEERS_BEGIN) == 1

    @dataclasses.dataclass
    class Sizes:
        data: str = "toy"

    readme = tmp_path / "README.md"
    readme.write_text(second)
    write_readme(readme, [], Sizes(), {"wall_s": 1.0, "load": ((0.0,), (0.0,))})
    text = readme.read_text()
    assert f"{PEERS_BEGIN}\nB\n{PEERS_END}" in text and "# divrec benchmarks" in text


def test_skips_with_one_line_without_runner_or_venv(tmp_path, capsys) -> None:
    args = ["--work", str(tmp_path / "w"), "--venv", str(tmp_path / "venv"), "--no-readme"]
    peers.main([*args, "--recbole-dir", str(tmp_path / "none")])
    assert capsys.readouterr().out.startswith("peers: skipped: RecBole's runner not found")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "run_recbole.py").write_text("")
    (shared / "setup_venv.sh").write_text("exit 1\n")  # as without network
    peers.main([*args, "--recbole-dir", str(shared)])
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("peers: skipped: RecBole's venv could not be built")
    assert Path(tmp_path / "w" / "venv.log").exists()

"""``python -m bench``: the report and its plots from canned results (no servers), and the exit status."""

from __future__ import annotations

import re
import sys
import types


from bench import __main__ as orchestrator
from bench import report


def canned_results() -> list[dict]:
    return [
        {"name": "timeline_memory", "title": "Timeline memory", "command": "python -m bench.timeline_memory",
         "body": "10.43 bytes per entry.", "figures": {"bytes_per_entry": 10.43}, "problems": []},
        {"name": "fanout_throughput", "title": "Fan-out throughput", "command": "python -m bench.fanout_throughput",
         "body": "142,648 entries/s.", "figures": {"followers": 100_000, "seconds_best": 0.7}, "problems": []},
        {"name": "raw_limits", "title": "Raw limits", "command": "python -m bench.raw_limits",
         "body": "bare uvicorn", "figures": {"push_limit_deliveries_per_s": 60_000}, "problems": []},
        {"name": "steady_load", "title": "Steady load", "command": "python -m bench.steady_load",
         "body": "| R | p99 |", "problems": [],
         "figures": {"highest_rate_held": 300, "followers_per_poster": 100, "deliveries_per_s_held": 30_000,
                     "p99_ms_at_target_rate": 31.0, "missing_at_target_rate": 0, "missing": 0, "duplicated": 0,
                     "service_us_per_delivery_at_cpu_rate": 37.4, "cpu_rate": 100},
         "series": {"rate": [50, 100, 200, 300, 400], "deliveries_per_s": [5e3, 1e4, 2e4, 3e4, 3.5e4],
                    "p99_ms": [9.0, 12.0, 31.0, 80.0, 240.0], "latency_rate": 300,
                    "latency_ms": [float(n) for n in range(1, 120)]}},
        {"name": "idle_sockets", "title": "Idle sockets", "command": "python -m bench.idle_sockets",
         "body": "RSS per socket", "problems": [], "figures": {"sockets": 10_000, "kb_per_socket": 21.5},
         "series": {"sockets": [0, 2500, 5000, 7500, 10_000], "rss_mib": [55.0, 105.0, 156.0, 207.0, 260.0]}},
        orchestrator._failed("live_shapes", "python -m bench.live_shapes", "bench.live_shapes not present"),
    ]


def test_report_has_the_summary_every_section_and_links_to_pngs_that_exist(tmp_path):
    output = tmp_path / "out" / "BENCHMARKS.md"
    results = canned_results()

    problems = orchestrator.write_report(results, output, command="python -m bench", seconds=61.0,
                                         machine_line="2 cores, test machine")

    text = output.read_text()
    assert "## Summary" in text and "| target | figure | status |" in text
    assert "| ≥ 50% of the bare-uvicorn push limit | 30,000 (steady, highest R held) of 60,000 deliveries/s (50%) | met |" in text
    assert "10,000 idle sockets < 30 KB RSS each | 21.5 KB per socket at 10,000 sockets | met |" in text
    assert ("| service CPU ≤ 25 µs per delivery at K=100 | 37 µs at R=100 (whole service: requests, fan-out, "
            "sockets) | **not met** |") in text
    for result in results:
        assert f"<!-- bench:{result['name']} -->" in text and f"<!-- /bench:{result['name']} -->" in text
        assert f"- Command: `{result['command']}`" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == ["docs/bench/latency-cdf.png", "docs/bench/rate-sweep.png", "docs/bench/rss-growth.png"]
    for link in links:
        png = output.parent / link
        assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size < 200_000
    assert problems == ["bench.live_shapes not present"]


def test_a_duplicated_delivery_is_a_problem_even_when_the_benchmark_does_not_list_it():
    result = {"name": "steady_load", "figures": {"missing": 0, "duplicated": 2}, "problems": []}
    assert report.delivery_problems(result) == ["steady_load: 2 duplicated deliveries"]
    status = dict((target, status) for target, _, status in report.summary_rows([result]))
    assert status["zero missing and zero duplicated deliveries in every run"] == report.NOT_MET


def test_quick_exits_nonzero_when_a_benchmark_reports_a_duplicated_delivery(tmp_path, monkeypatch):
    fake = types.ModuleType("bench.fake_duplicates")

    async def measure(quick: bool = False) -> dict:
        assert quick
        return {"name": "fake_duplicates", "title": "Fake", "command": "python -m bench.fake_duplicates",
                "body": "one tweet delivered twice", "figures": {"missing": 0, "duplicated": 1}, "problems": []}

    fake.measure = measure
    monkeypatch.setitem(sys.modules, "bench.fake_duplicates", fake)
    monkeypatch.setattr(orchestrator, "PHASES", [("fake_duplicates", "a fake benchmark")])
    output = tmp_path / "BENCHMARKS.md"

    assert orchestrator.main(["--quick", "--output", str(output)]) == 1
    assert "fake_duplicates: 1 duplicated deliveries" in output.read_text()


def test_a_benchmark_not_merged_yet_is_a_problem_and_the_others_still_run(tmp_path, monkeypatch):
    ran = []
    fake = types.ModuleType("bench.fake_clean")

    async def measure(quick: bool = False) -> dict:
        ran.append(quick)
        return {"name": "fake_clean", "title": "Clean", "command": "x", "body": "ok", "figures": {}, "problems": []}

    fake.measure = measure
    monkeypatch.setitem(sys.modules, "bench.fake_clean", fake)
    monkeypatch.setattr(orchestrator, "PHASES", [("no_such_benchmark", "missing"), ("fake_clean", "clean")])
    output = tmp_path / "BENCHMARKS.md"

    assert orchestrator.main(["--quick", "--output", str(output)]) == 1
    assert ran == [True]
    assert "bench.no_such_benchmark not present" in output.read_text()

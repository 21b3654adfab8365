"""BENCHMARKS.md as a whole: the header, the summary of targets, then one section per benchmark.

A benchmark's result (what its ``measure(quick)`` answers) is a dict::

    {"name": "steady_load", "title": "...", "command": "python -m bench.steady_load",
     "body": "Markdown", "figures": {...}, "series": {...} (optional), "problems": [...]}

Sections keep the ``<!-- bench:NAME -->`` markers of ``bench.common.write_section``, so a
single benchmark's own command can later rewrite its section alone. The targets are shown
(met / not met / not measured), never asserted: only ``problems`` make a run fail.

Figures read for the summary (a missing one reads "not measured"):

- ``steady_load``: ``p99_ms_at_target_rate``, ``missing_at_target_rate``, ``followers_per_poster``,
  ``highest_rate_held``, ``deliveries_per_s_held``, ``service_us_per_delivery_at_cpu_rate``, ``cpu_rate``;
- ``raw_limits``: ``push_limit_deliveries_per_s`` (bare uvicorn's push limit, deliveries/s);
- ``idle_sockets``: ``sockets``, ``kb_per_socket``;
- ``fanout_throughput``: ``followers``, ``seconds_best``;
- ``redis_cost``: ``us_per_entry_average``, ``raw_lpush_us``;
- ``viewer_state``: ``home_server_p99_ms``, ``like_us_watched``, ``like_commands_watched``;
- ``hot_fanout``: ``hot_followers``, ``hot_commands_per_tweet``, ``hot_commands_per_tweet_10k``,
  ``pushed_commands_per_tweet``, ``hot_last_socket_ms``, ``read_merged_p99_ms``, ``read_p99_ratio``;
- every result: ``missing``, ``duplicated`` (deliveries), when it delivers anything.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["Result", "delivery_problems", "summary_rows", "render"]

Result = Mapping[str, object]

MET, NOT_MET, NOT_MEASURED = "met", "**not met**", "not measured"
STEADY_RATE, STEADY_K, STEADY_P99_MS = 200, 100, 50.0
RAW_SHARE = 0.5
IDLE_SOCKETS, IDLE_KB = 10_000, 30.0
FANOUT_FOLLOWERS, FANOUT_SECONDS = 100_000, 1.0
REDIS_US_PER_ENTRY = 3.0
HOME_P99_MS = 5.0
SERVICE_US_PER_DELIVERY = 25.0
HOT_FOLLOWERS, HOT_LAST_MS, HOT_READ_RATIO = 1_000_000, 100.0, 2.0
RAW_KEYS = ("push_limit_deliveries_per_s", "push_limit")


def _figures(results: Sequence[Result], name: str) -> Mapping | None:
    for result in results:
        if result.get("name") == name:
            return result.get("figures") or {}
    return None


def delivery_problems(result: Result) -> list[str]:
    """Problems the figures show even when the benchmark did not list them: missing or duplicated deliveries."""
    figures = result.get("figures") or {}
    name = result.get("name", "?")
    listed = " ".join(result.get("problems") or [])
    found = []
    for key in ("missing", "duplicated"):
        count = figures.get(key)
        # Added unless the benchmark already said so in its own words.
        if isinstance(count, (int, float)) and count > 0 and key not in listed:
            found.append(f"{name}: {count:,} {key} deliveries")
    return found


def _counts(result: Result, kind: str) -> list[int]:
    """Every ``missing`` (or ``duplicated``) count among the figures, also ``celebrity_10k_missing`` and the like."""
    return [value for key, value in (result.get("figures") or {}).items()
            if (key == kind or key.endswith("_" + kind)) and isinstance(value, (int, float))]


def summary_rows(results: Sequence[Result]) -> list[tuple[str, str, str]]:
    """(target, figure, status) for each target of the issue."""
    rows = []
    steady = _figures(results, "steady_load")
    if steady and steady.get("p99_ms_at_target_rate") is not None:
        p99, missing = steady["p99_ms_at_target_rate"], steady.get("missing_at_target_rate") or 0
        k = steady.get("followers_per_poster")
        met = p99 < STEADY_P99_MS and not missing and k == STEADY_K
        figure = f"p99 {p99:.1f} ms, {missing} missing at R={STEADY_RATE}, K={k}"
        rows.append((f"steady R ≥ {STEADY_RATE} tweets/s × {STEADY_K} followers, p99 < {STEADY_P99_MS:.0f} ms, "
                     "nothing missing", figure, MET if met else NOT_MET))
    else:
        held = f"highest R held {steady.get('highest_rate_held')} (K={steady.get('followers_per_poster')})" if steady else "-"
        rows.append((f"steady R ≥ {STEADY_RATE} tweets/s × {STEADY_K} followers, p99 < {STEADY_P99_MS:.0f} ms, "
                     "nothing missing", f"R={STEADY_RATE} not run; {held}", NOT_MEASURED))
    target = f"service CPU ≤ {SERVICE_US_PER_DELIVERY:g} µs per delivery at K={STEADY_K}"
    us = steady.get("service_us_per_delivery_at_cpu_rate") if steady else None
    if us is not None and steady.get("followers_per_poster") == STEADY_K:
        rows.append((target, f"{us:.0f} µs at R={steady.get('cpu_rate'):g} (whole service: requests, fan-out, sockets)",
                     MET if us <= SERVICE_US_PER_DELIVERY else NOT_MET))
    else:
        rows.append((target, "-", NOT_MEASURED))
    raw = _figures(results, "raw_limits")
    limit = next((raw[key] for key in RAW_KEYS if raw and raw.get(key)), None)
    ours = steady.get("deliveries_per_s_held") if steady else None
    # The bare limit is one frame pushed to every socket at once; our nearest shape is a
    # celebrity's tweet reaching 10,000 sockets (median over its tweets), so take the better.
    shapes = _figures(results, "live_shapes") or {}
    burst = shapes.get("celebrity_10k_deliveries_per_s") or 0.0
    best_push, source = max((ours or 0.0, "steady, highest R held"), (burst, "celebrity tweet to 10,000 sockets"))
    if limit and best_push:
        share = best_push / limit
        rows.append((f"≥ {RAW_SHARE:.0%} of the bare-uvicorn push limit",
                     f"{best_push:,.0f} ({source}) of {limit:,.0f} deliveries/s ({share:.0%})",
                     MET if share >= RAW_SHARE else NOT_MET))
    else:
        rows.append((f"≥ {RAW_SHARE:.0%} of the bare-uvicorn push limit",
                     "bare-uvicorn limit not measured" if not limit else "no steady rate held", NOT_MEASURED))
    round_robin = raw.get("push_round_robin_frames_per_s") if raw else None
    if round_robin and best_push:
        rows.append(("ours as a share of bare uvicorn writing one frame to each socket in turn (informative: "
                     "the shape of a live tweet)",
                     f"{best_push:,.0f} of {round_robin:,.0f} deliveries/s ({best_push / round_robin:.0%})", "-"))
    publish_limit = raw.get("publish_limit_msgs_per_s") if raw else None
    if publish_limit and ours:
        rows.append(("ours as a share of one redis-py subscriber's PUBLISH limit (informative: one message "
                     "per process and batch now carries many deliveries)",
                     f"{ours:,.0f} deliveries/s vs {publish_limit:,.0f} messages/s ({ours / publish_limit:.0%})", "-"))
    idle = _figures(results, "idle_sockets")
    if idle and idle.get("kb_per_socket") is not None and idle.get("sockets"):
        sockets, kb = idle["sockets"], idle["kb_per_socket"]
        status = (MET if kb < IDLE_KB else NOT_MET) if sockets >= IDLE_SOCKETS else NOT_MEASURED
        rows.append((f"{IDLE_SOCKETS:,} idle sockets < {IDLE_KB:.0f} KB RSS each",
                     f"{kb:.1f} KB per socket at {sockets:,} sockets", status))
    else:
        rows.append((f"{IDLE_SOCKETS:,} idle sockets < {IDLE_KB:.0f} KB RSS each", "-", NOT_MEASURED))
    fanout = _figures(results, "fanout_throughput")
    if fanout and fanout.get("seconds_best") is not None:
        followers, seconds = fanout["followers"], fanout["seconds_best"]
        status = (MET if seconds < FANOUT_SECONDS else NOT_MET) if followers >= FANOUT_FOLLOWERS else NOT_MEASURED
        rows.append((f"{FANOUT_FOLLOWERS:,}-follower fan-out written in < {FANOUT_SECONDS:g} s",
                     f"{followers:,} followers in {seconds:.2f} s", status))
    else:
        rows.append((f"{FANOUT_FOLLOWERS:,}-follower fan-out written in < {FANOUT_SECONDS:g} s", "-", NOT_MEASURED))
    cost = _figures(results, "redis_cost")
    target = f"Redis CPU ≤ {REDIS_US_PER_ENTRY:g} µs per timeline entry (K=100 and K=100,000, 5% online)"
    if cost and cost.get("us_per_entry_average") is not None:
        average, raw = cost["us_per_entry_average"], cost.get("raw_lpush_us")
        rows.append((target, f"{average:.2f} µs (a raw pipelined LPUSH: {raw:.2f} µs)",
                     MET if average <= REDIS_US_PER_ENTRY else NOT_MET))
    else:
        rows.append((target, "-", NOT_MEASURED))
    viewer = _figures(results, "viewer_state")
    target = f"home timeline read p99 < {HOME_P99_MS:g} ms server-side (20 tweets, display names and flags)"
    if viewer and viewer.get("home_server_p99_ms") is not None:
        p99 = viewer["home_server_p99_ms"]
        rows.append((target, f"{p99:.2f} ms (a like watched by sockets: {viewer['like_commands_watched']:.1f} "
                             f"Redis commands, {viewer['like_us_watched']:.0f} µs)",
                     MET if p99 < HOME_P99_MS else NOT_MET))
    else:
        rows.append((target, "-", NOT_MEASURED))
    rows += _hot_rows(_figures(results, "hot_fanout"))
    delivering = [result for result in results if _counts(result, "missing")]
    missing = sum(sum(_counts(result, "missing")) for result in delivering)
    duplicated = sum(sum(_counts(result, "duplicated")) for result in delivering)
    failed = [result for result in delivering if result.get("problems")]
    names = ", ".join(str(result["name"]) for result in delivering) or "no run delivered anything"
    if not delivering:
        status = NOT_MEASURED
    else:
        status = MET if not (missing or duplicated or failed) else NOT_MET
    rows.append(("zero missing and zero duplicated deliveries in every run",
                 f"{missing:,} missing, {duplicated:,} duplicated ({names})", status))
    return rows


def _hot_rows(hot: Mapping | None) -> list[tuple[str, str, str]]:
    """Hybrid fan-out's targets (bench.hot_fanout); met only at a million followers."""
    targets = (f"a hot account's tweet ({HOT_FOLLOWERS:,} followers): Redis commands independent of the follower count",
               f"a hot account's tweet: POST → the last of 2,000 connected followers < {HOT_LAST_MS:g} ms",
               f"merged home read (20 hot + 500 ordinary followed): server p99 < {HOME_P99_MS:g} ms and ≤ "
               f"{HOT_READ_RATIO:g}× a reader's who follows no hot account")
    if not hot or hot.get("hot_commands_per_tweet") is None:
        return [(target, "-", NOT_MEASURED) for target in targets]
    full = hot.get("hot_followers", 0) >= HOT_FOLLOWERS
    commands, small = hot["hot_commands_per_tweet"], hot["hot_commands_per_tweet_10k"]
    flat = commands <= 2 * small
    last, p99, ratio = hot["hot_last_socket_ms"], hot["read_merged_p99_ms"], hot["read_p99_ratio"]

    def status(ok: bool) -> str:
        return (MET if ok else NOT_MET) if full else NOT_MEASURED

    return [(targets[0], f"{commands:,.0f} commands at {hot['hot_followers']:,} followers, {small:,.0f} at 10,000 "
                         f"(pushed: {hot['pushed_commands_per_tweet']:,.0f})", status(flat)),
            (targets[1], f"{last:.0f} ms (worst tweet)", status(last < HOT_LAST_MS)),
            (targets[2], f"p99 {p99:.2f} ms, {ratio:.2f}× the plain reader's",
             status(p99 < HOME_P99_MS and ratio <= HOT_READ_RATIO))]


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(results: Sequence[Result], *, output: Path, date: str, commit: str, machine_line: str, command: str,
           seconds: float, images: Mapping[str, Sequence[tuple[str, Path]]]) -> str:
    """The whole of BENCHMARKS.md; ``images`` maps a benchmark to its (caption, PNG path) list."""
    problems = [problem for result in results for problem in [*(result.get("problems") or []),
                                                               *delivery_problems(result)]]
    lines = [
        "# Benchmarks",
        "",
        "Written as a whole by `python -m bench` (every benchmark, one after the other, against servers it "
        "starts itself: private redis-servers on free ports, the service with rate limits off). Each section "
        "names its own command, which rewrites that section alone.",
        "",
        f"- Date: {date}",
        f"- Commit: {commit}",
        f"- Machine: {machine_line}",
        f"- Command: `{command}` ({seconds:.0f} s)",
        "",
        "## Summary",
        "",
        "Targets are reported, never asserted; a run fails only on errors and on missing or duplicated deliveries.",
        "",
        "| target | figure | status |",
        "|---|---|---|",
        *(f"| {_cell(target)} | {_cell(figure)} | {status} |" for target, figure, status in summary_rows(results)),
        "",
        "Benchmarks run: " + ", ".join(f"[{result['name']}](#{_anchor(str(result.get('title', '')))})"
                                       for result in results) + ".",
        "",
        "Problems: none." if not problems else "Problems (the run failed):",
    ]
    if problems:
        lines += ["", *(f"- {_cell(problem)}" for problem in problems)]
    for result in results:
        name = result["name"]
        lines += ["", f"<!-- bench:{name} -->", f"## {result.get('title', name)}", "",
                  f"- Command: `{result.get('command', '')}`", "", str(result.get("body", "")).strip(), ""]
        for caption, path in images.get(str(name), []):
            link = Path(os.path.relpath(path, output.parent)).as_posix()
            lines += [f"![{caption}]({link})", ""]
        if result.get("problems"):
            lines += ["Problems in this run:", "", *(f"- {_cell(problem)}" for problem in result["problems"]), ""]
        lines.append(f"<!-- /bench:{name} -->")
    return "\n".join(lines) + "\n"


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    kept = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")

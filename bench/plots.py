"""The PNG figures of BENCHMARKS.md, drawn with matplotlib (Agg, no display) from the results' ``series``.

Each function writes one small PNG (dpi 100) and answers its path, or None when the series
it needs is missing or empty (a benchmark that failed, or was not run).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

__all__ = ["latency_cdf", "rate_sweep", "rss_growth", "draw_all"]

DPI = 100
SIZE = (6.4, 3.6)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def latency_cdf(series: Mapping, path: Path) -> Path | None:
    """Share of deliveries within x ms (POST sent → socket), at the highest rate held."""
    values = list(series.get("latency_ms") or [])
    if not values:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=SIZE)
    shares = [(i + 1) / len(values) for i in range(len(values))]
    ax.step(values, shares, where="post")
    ax.axvline(50, color="tab:red", linestyle="--", linewidth=1, label="50 ms target (p99)")
    ax.axhline(0.99, color="gray", linestyle=":", linewidth=1, label="p99")
    ax.set_xlabel("POST sent → delivery (ms)")
    ax.set_ylabel("share of deliveries")
    ax.set_title(f"Delivery latency at R = {series.get('latency_rate')} tweets/s")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def rate_sweep(series: Mapping, path: Path) -> Path | None:
    """Deliveries/s (left axis) and p99 (right axis) against R, one point per step."""
    rates = list(series.get("rate") or [])
    if not rates:
        return None
    plt = _pyplot()
    fig, left = plt.subplots(figsize=SIZE)
    left.plot(rates, series["deliveries_per_s"], marker="o", color="tab:blue", label="deliveries/s")
    left.set_xlabel("R (tweets/s posted)")
    left.set_ylabel("deliveries/s", color="tab:blue")
    left.set_xlim(left=0)
    left.set_ylim(bottom=0)
    left.grid(alpha=0.3)
    right = left.twinx()
    right.plot(rates, series["p99_ms"], marker="s", color="tab:orange", label="p99 ms")
    right.axhline(100, color="tab:red", linestyle="--", linewidth=1)
    right.set_ylabel("p99 latency (ms; dashed: 100 ms)", color="tab:orange")
    right.set_ylim(bottom=0)
    left.set_title("Steady load: deliveries/s and p99 as R grows")
    return _save(fig, path)


def rss_growth(series: Mapping, path: Path) -> Path | None:
    """Service RSS against open sockets."""
    sockets = list(series.get("sockets") or [])
    if not sockets:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=SIZE)
    ax.plot(sockets, series["rss_mib"], marker="o")
    ax.set_xlabel("idle sockets open")
    ax.set_ylabel("service RSS (MiB)")
    ax.set_title("Service RSS as sockets grow")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    return _save(fig, path)


# benchmark name -> [(file name, caption, drawing function)]
FIGURES = {
    "steady_load": [("latency-cdf.png", "Delivery latency distribution at the highest R held (the last step when none held)",
                     latency_cdf),
                    ("rate-sweep.png", "Deliveries/s and p99 as R grows", rate_sweep)],
    "idle_sockets": [("rss-growth.png", "Service RSS as sockets grow", rss_growth)],
}


def draw_all(results: list[Mapping], directory: Path) -> dict[str, list[tuple[str, Path]]]:
    """Every figure the results have series for: {benchmark name: [(caption, PNG path)]}."""
    drawn: dict[str, list[tuple[str, Path]]] = {}
    for result in results:
        for filename, caption, draw in FIGURES.get(result.get("name", ""), []):
            path = draw(result.get("series") or {}, directory / filename)
            if path is not None:
                drawn.setdefault(result["name"], []).append((caption, path))
    return drawn

"""The timeline plot of a run, in the manner of Jepsen's latency and rate graphs.

`timeline(history, path_png)` writes one PNG of two panels sharing the time axis (seconds since the run
started):

  latency     every send's latency (completion time minus invoke time, log scale) at its invoke time:
              ok sends as small blue dots drawn on top, failed (red) and indeterminate (orange) ones
              beneath them, so a fault's timeouts show as a wall;
  throughput  completions per second, one line per operation f and outcome (ok solid, fail dashed, info
              dotted), counted in one-second buckets by completion time.

On both panels every nemesis fault is a shaded interval from its "start" to its "stop" (starts and stops
of one fault name are paired in order, a stop naming no open fault closes the one open longest, and a
start never stopped runs to the end of the history), labelled
with the fault's name above the latency panel. Nemesis "observed" events are ticks along the top of the
throughput panel: green when the fault's effect was seen, red when it was not.

matplotlib is used with the Agg backend (no display needed); numpy does the bucketing.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_TYPE_STYLE = {"ok": "-", "fail": "--", "info": ":"}
_SEND_COLOURS = {"ok": "tab:blue", "fail": "tab:red", "info": "tab:orange"}
# pastels with no red or orange in them, so a fault's shade never reads as failed sends
_FAULT_COLOURS = ["#b3e2cd", "#cbd5e8", "#fff2ae", "#d9d9d9", "#a6cee3", "#e6f5c9", "#d8c8ee", "#c7eae5"]


def _nemesis_intervals(history: list[dict], end: float) -> list[tuple[str, float, float]]:
    open_: dict[str, list[float]] = {}
    out = []
    for ev in history:
        if ev.get("process") != "nemesis":
            continue
        v = ev.get("value") if isinstance(ev.get("value"), dict) else {}
        name = str(v.get("fault"))
        if ev.get("f") == "start":
            open_.setdefault(name, []).append(ev.get("time") or 0.0)
        elif ev.get("f") == "stop":
            starts = open_.get(name)
            if not starts:  # a stop naming no open fault closes the one open longest
                cands = [(ss[0], n) for n, ss in open_.items() if ss]
                if cands:
                    name = min(cands)[1]
                    starts = open_[name]
            if starts:
                out.append((name, starts.pop(0), ev.get("time") or 0.0))
    for name, starts in open_.items():
        for s in starts:
            out.append((name, s, end))
    out.sort(key=lambda x: x[1])
    return out


def timeline(history: list[dict], path_png, title: str | None = None) -> Path:
    """Writes the timeline PNG of `history` to `path_png` and returns its path."""
    path_png = Path(path_png)
    open_inv: dict = {}
    lat = {"ok": ([], []), "fail": ([], []), "info": ([], [])}
    completions: dict[tuple[str, str], list[float]] = {}
    observed: list[tuple[float, bool]] = []
    end = 0.0
    for ev in history:
        t = ev.get("time") or 0.0
        if t > end:
            end = t
        proc = ev.get("process")
        typ = ev.get("type")
        f = ev.get("f")
        if proc == "nemesis":
            if f == "observed":
                v = ev.get("value") if isinstance(ev.get("value"), dict) else {}
                observed.append((t, v.get("ok") is True))
            continue
        if proc == "checker":
            continue
        if typ == "invoke":
            open_inv[proc] = ev
            continue
        completions.setdefault((str(f), str(typ)), []).append(t)
        inv = open_inv.pop(proc, None)
        if f == "send" and inv is not None and inv.get("f") == "send" and typ in lat:
            t0 = inv.get("time") or 0.0
            lat[typ][0].append(t0)
            lat[typ][1].append(max(t - t0, 1e-6) * 1000.0)

    intervals = _nemesis_intervals(history, end)
    fig, (ax_l, ax_t) = plt.subplots(2, 1, figsize=(14, 8), sharex=True,
                                     gridspec_kw={"height_ratios": [1, 1]})
    faults = sorted({name for name, _, _ in intervals})
    cmap = plt.get_cmap("tab10")
    fault_colour = {name: _FAULT_COLOURS[i % len(_FAULT_COLOURS)] for i, name in enumerate(faults)}

    # latency
    for typ in ("fail", "info", "ok"):  # ok on top: successes during a fault stay visible
        xs, ys = lat[typ]
        if xs:
            ax_l.scatter(xs, ys, s=2 if typ == "ok" else 6, c=_SEND_COLOURS[typ], alpha=0.6,
                         linewidths=0, label=f"send {typ} ({len(xs)})", rasterized=True)
    if any(lat[k][0] for k in lat):
        ax_l.set_yscale("log")
        ax_l.legend(loc="upper right", fontsize=8, markerscale=3)
    ax_l.set_ylabel("send latency (ms)")
    ax_l.grid(True, which="both", alpha=0.25)

    # throughput
    nbins = int(end) + 1
    fs = sorted({f for f, _ in completions})
    f_colour = {f: cmap(i % 10) for i, f in enumerate(fs)}
    for (f, typ), ts in sorted(completions.items()):
        counts = np.bincount(np.asarray(ts, dtype=float).astype(int), minlength=nbins)
        ax_t.plot(np.arange(len(counts)) + 0.5, counts, _TYPE_STYLE.get(typ, "-."), color=f_colour[f],
                  linewidth=1.0, label=f"{f} {typ}")
    ax_t.set_ylabel("completions / s")
    ax_t.set_xlabel("time (s)")
    ax_t.grid(True, alpha=0.25)
    if completions:
        ax_t.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, ncol=1)

    # nemesis intervals and observations
    for name, s, e in intervals:
        for ax in (ax_l, ax_t):
            ax.axvspan(s, max(e, s + 1e-3), color=fault_colour[name], alpha=0.35, linewidth=0)
        ax_l.annotate(name, xy=(s, 1.0), xycoords=("data", "axes fraction"), xytext=(1, 2),
                      textcoords="offset points", fontsize=7, rotation=30, ha="left", va="bottom",
                      color="0.25")
    for t, ok in observed:
        ax_t.plot([t], [1.0], marker="v", color="tab:green" if ok else "tab:red", markersize=5,
                  transform=ax_t.get_xaxis_transform(), clip_on=False)

    ax_t.set_xlim(0, max(end, 1.0))
    fig.suptitle(title or "timeline: send latency and throughput; shaded = nemesis faults", y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path_png, dpi=100)
    plt.close(fig)
    return path_png

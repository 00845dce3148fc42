"""benchmarks/quality.py's arithmetic and its printout: the cascade's calibration, one row per
arm (computed in clients/eval/checkable/arms.py, which `colm-eval table --checkable` prints too),
the paired tests, CPT and the accuracy-against-cost plot. Pure functions of the answers."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

from clients.eval.checkable import metrics, thresholds
from clients.eval.checkable.arms import CLIENT, SERVER, ArmRow, QualityRun, by_arm, summarise

SIGNALS = ("mean", "min", "p10", "window", "brevity")


FAILED_CHECK = -1e6  # a draft that failed its check scores below every threshold: the app escalates it


def decision_score(draft, signal: str) -> float | None:
    """The score the cascade decides on: the signal, or FAILED_CHECK where the draft failed its check."""
    d = draft if isinstance(draft, dict) else draft.__dict__
    return FAILED_CHECK if d.get("check") == "failed" else d["confidence"].get(signal)


def fit_cascade(drafts, *, alpha: float, check: str = "none") -> dict:
    """The signal whose decision scores best tell right drafts from wrong ones, and its conformal threshold.
    With a check, the drafts carry its outcome and a failed one scores FAILED_CHECK under every signal."""
    rows = [d for d in _as_dicts(drafts) if not d["error"] and d["confidence"]]
    correct = [d["correct"] for d in rows]
    auroc = {s: _defined(metrics.auroc, [decision_score(d, s) for d in rows], correct) for s in SIGNALS}
    auroc = {s: round(v if v is not None else 0.5, 4) for s, v in auroc.items()}  # one class only: no signal tells
    best = max(SIGNALS, key=lambda s: auroc[s])
    scores = [decision_score(d, best) for d in rows]
    threshold = thresholds.conformal_threshold(scores, correct, alpha=alpha)
    threshold = 0.0 if math.isinf(threshold) else threshold  # JSON has no infinity; 0 escalates every draft
    return {"signal": best, "threshold": threshold, "alpha": alpha, "check": check, "auroc": auroc,
            "drafts": len(rows), "drafts_correct": sum(correct),
            "checks_failed": sum(d.get("check") == "failed" for d in rows),
            "let_through_calibration": round(thresholds.let_through(scores, correct, threshold), 4)}


def _as_dicts(answers) -> list[dict]:
    return [a if isinstance(a, dict) else a.__dict__ for a in answers]


def write(results: dict, out: Path) -> str:
    """The run's answers, its printout and its plot in `out`; returns the printout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "answers.json").write_text(json.dumps(results, indent=1))
    text = render(results, png=out / "quality.png")
    (out / "quality-run.txt").write_text(text)
    return text


def render(results: dict, *, png: Path | None = None) -> str:
    run = QualityRun.model_validate(results)
    arms, problems, fit = summarise(run), run.problems, results["fit"]
    lines = [f"# Quality against cost: {len(problems)} test problems ({_count(problems)}), {results['setup']}",
             f"# wall time {results['wall_s']} s",
             "",
             f"cascade calibration ({fit['drafts']} drafts, {fit['drafts_correct']} right, "
             f"check {fit.get('check', 'none')}: {fit.get('checks_failed', 0)} failed it): AUROC by signal "
             + ", ".join(f"{s} {v:.3f}" for s, v in fit["auroc"].items())
             + f"; chose {fit['signal']}, threshold {fit['threshold']:.4f} (conformal, wrong let through <= "
             f"{fit['alpha']:.0%}; {fit['let_through_calibration']:.1%} on calibration)",
             "",
             f"{'arm':<20} {'accuracy':>8} {'95% CI':>15} {'$/answer':>10} {'ratio':>6} {'PGR':>6} "
             f"{'PGR 90% CI':>15} {'escal.':>6} {'err':>3}  per task",
             *map(_line, arms),
             "", *_tests(by_arm(run.answers), problems, fit), *_frontier(arms)]
    if png:
        plot(arms, png)
        lines.append(f"plot: {png}")
    return "\n".join(lines) + "\n"


def _line(r: ArmRow) -> str:
    pgr = f"{r.pgr:6.2f}" if r.pgr is not None else "   n/a"
    ratio = f"{r.ratio:6.2f}" if r.ratio is not None else "   n/a"
    ci = f"[{r.pgr90[0]:5.2f}, {r.pgr90[1]:5.2f}]" if r.pgr90 else " " * 15
    esc = f"{r.escalation:6.0%}" if r.escalation is not None else " " * 6
    return (f"{r.arm:<20} {r.accuracy:8.1%} [{r.ci95[0]:5.1%}, {r.ci95[1]:5.1%}] {r.cost_per_answer:10.6f} {ratio} "
            f"{pgr} {ci:>15} {esc} {r.errors:3d}  " + " ".join(f"{t} {s.correct}/{s.n}" for t, s in r.by_task.items()))


def _frontier(arms: list[ArmRow], *, pgr: float = 0.5, ratio: float = 0.35) -> list[str]:
    """Which arms recover PGR >= pgr at a cost ratio <= ratio, and whether the lower end of their PGR
    interval clears the random mix of client and server at the same cost (whose PGR is its ratio)."""
    out = []
    for r in arms:
        if r.arm in (CLIENT, SERVER) or r.pgr is None or r.ratio is None or not r.pgr90:
            continue
        verdict = "holds" if r.pgr >= pgr and r.ratio <= ratio and r.pgr90[0] > r.ratio else "does not hold"
        out.append(f"{r.arm}: PGR {r.pgr:.2f} (90% lower end {r.pgr90[0]:.2f}) at cost ratio {r.ratio:.2f}, random mix "
                   f"there {r.ratio:.2f}: PGR >= {pgr} at <= {ratio} above the random mix {verdict}")
    return out


def _count(problems) -> str:
    counts: dict[str, int] = defaultdict(int)
    for task, _ in problems:
        counts[task] += 1
    return ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))


def _tests(table, problems, fit) -> list[str]:
    client = [int(table[CLIENT][p].right) for p in problems]
    server = [int(table[SERVER][p].right) for p in problems]
    test = metrics.mcnemar_exact(server, client)
    out = [f"server vs client, exact McNemar: p = {test.p_value:.2g} (server right and client wrong on {test.b}, "
           f"the reverse on {test.c})"]
    drafts = [table[CLIENT][p].model_dump() for p in problems]
    for d in drafts:
        d["confidence"] = {s: d["confidence"].get(s, 0.0) for s in SIGNALS}
    aurocs = {s: _defined(metrics.auroc, [d["confidence"][s] for d in drafts], client) for s in SIGNALS}
    out.append("AUROC on the test split (client drafts, right against wrong): "
               + ", ".join(f"{s} {'n/a' if v is None else f'{v:.3f}'}" for s, v in aurocs.items()))
    scores = [decision_score(d, fit["signal"]) for d in drafts]
    if fit.get("check", "none") != "none":
        failed = [d for d in drafts if d["check"] == "failed"]
        wrong = sum(1 for d, y in zip(drafts, client) if d["check"] == "failed" and not y)
        decided = _defined(metrics.auroc, scores, client)
        out.append(f"{fit['check']} check on the test split: {len(failed)} drafts failed it, {wrong} of them wrong; "
                   f"AUROC of {fit['signal']} with the check: {'n/a' if decided is None else f'{decided:.3f}'}")
    out.append(f"cascade's {fit['signal']} threshold lets through {thresholds.let_through(scores, client, fit['threshold']):.1%} "
               f"wrong answers on the test split (bound {fit['alpha']:.0%})")
    for target in (0.5, 0.8):
        found = _defined(thresholds.cpt, scores, client, server, target)
        share = found.share if found else None
        out.append(f"CPT({target:.0%}): " + (f"{share:.1%} of questions sent to the server" if share is not None
                                             else "not reached"))
    return out


def _defined(fn, *args):
    """The statistic, or None where the sample cannot define it (one class only, no gap)."""
    try:
        return fn(*args)
    except ValueError:
        return None


def plot(arms: list[ArmRow], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name = {r.arm: r for r in arms}
    fig, ax = plt.subplots(figsize=(7.5, 5))
    client, server = by_name[CLIENT], by_name[SERVER]
    ax.plot([client.cost_per_answer, server.cost_per_answer], [client.accuracy, server.accuracy],
            "--", color="grey", label="random mix of client and server")
    for i, r in enumerate(arms):
        lo, hi = r.ci95
        ax.errorbar(r.cost_per_answer, r.accuracy, yerr=[[r.accuracy - lo], [hi - r.accuracy]], fmt="o", capsize=3)
        # above and below in turn: arms at a like cost and accuracy would print over each other
        ax.annotate(r.arm, (r.cost_per_answer, r.accuracy), textcoords="offset points", xytext=(5, 5 if i % 2 else -12),
                    fontsize=8)
    ax.set_xlabel("server cost per answer (USD, as billed)")
    ax.set_ylabel("accuracy (GSM8K, HumanEval, MBPP pooled)")
    ax.set_title("Quality against cost (95% Wilson intervals)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)

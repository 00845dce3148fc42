"""Cascade escalating to shepherd and guide afresh, replayed from a stored quality run.

With no draft attached (`draft_tokens` 0) an escalation to shepherd or guide makes the calls that
strategy makes alone (tests/collab/test_cascade.py), so benchmarks/quality.py shares them: the
cascade's answer is the client alone's where its draft stands and the strategy's own where it
escalates, billed as if it ran alone. This recomputes those two arms from a run's stored answers,
as quality.py does from the same answers, and prints the run's report with them in place of the
stored ones (a run that attached the draft, for instance). Nothing is sent to the app.

    python benchmarks/replay_escalations.py docs/quality/draft-attached/answers.json \
        --out docs/quality/draft-attached/afresh
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/<name>.py`: the repo root must be importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _quality_report as report
from benchmarks.quality import Answer, shared_cascade, test_arms


def replay(results: dict) -> dict:
    """The run with its cascade -> shepherd and cascade -> guide answers recomputed afresh."""
    fit, answers = results["fit"], [Answer(**a) for a in results["answers"]]
    arms = [a for a in test_arms(fit["signal"], fit["threshold"], fit.get("check", "none"))
            if a.colm and a.colm.get("escalate_to") in ("shepherd", "guide")]
    names = {a.name for a in arms}
    replayed = [a for a in answers if a.arm not in names]
    for arm in arms:
        kept, shared, missing = shared_cascade(arm, answers, fit)
        if missing:
            raise SystemExit(f"{arm.name}: {len(missing)} escalations have no stored {arm.colm['escalate_to']} answer "
                             f"to share (e.g. {sorted(missing)[0]}); run benchmarks/quality.py instead")
        replayed += kept + shared
    return {**results, "answers": [asdict(a) for a in replayed],
            "arms": results["arms"] + sorted(names - set(results["arms"])),
            "setup": f"{results['setup']}; {' and '.join(sorted(names))} replayed afresh from the stored answers"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("answers", type=Path, help="answers.json of a benchmarks/quality.py run")
    parser.add_argument("--out", type=Path, required=True, help="folder for the report, answers and plot")
    args = parser.parse_args()
    print(report.write(replay(json.loads(args.answers.read_text())), args.out))


if __name__ == "__main__":
    main()

"""`python -m loadtest.compare --host URL`: the same workload three ways, one after another.

  server        every session to server/<reference-server> (one upstream call, no CoLM)
  colm          every session to colm, all optimisations on (coalescing, cache)
  colm-nocache  every session to colm with colm.cache=false on each request

Each run is a headless Locust run with the same seed (so the same questions in the same
order). With --rounds N the three runs are interleaved N times (round r uses seed+r) and
the medians are compared, so a slow minute on a noisy machine hits all three alike.
Options after `--` go to every Locust run (e.g. -- --max-tokens 32 --colm-iterations 0).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from loadtest._compare_table import VariantResult, ratio_table, variant_table
from loadtest._records import read_records, requests_csv_path
from loadtest._report_data import summaries

LOCUSTFILE_DIR = Path(__file__).parent


def variants(reference_server: str) -> dict[str, list[str]]:
    return {
        "server": ["--colm-mix", f"server/{reference_server}=1", "--colm-cache", "on"],
        "colm": ["--colm-mix", "colm=1", "--colm-cache", "on"],
        "colm-nocache": ["--colm-mix", "colm=1", "--colm-cache", "off"],
    }


def locust_command(args: argparse.Namespace, *, variant_args: list[str], prefix: Path, seed: int) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE_DIR), "--headless", "--host", args.host,
            "-u", str(args.users), "-r", str(args.spawn_rate), "-t", args.run_time, "--csv", str(prefix),
            "--colm-seed", str(seed), "--colm-report", "on" if args.reports else "off", "--only-summary",
            *variant_args, *args.locust_args]


def run_variant(args: argparse.Namespace, *, name: str, variant_args: list[str], round_index: int) -> VariantResult:
    prefix = Path(args.out) / f"r{round_index}_{name}"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    command = locust_command(args, variant_args=variant_args, prefix=prefix, seed=args.seed + round_index)
    print(f"[round {round_index + 1}/{args.rounds}] {name}: {' '.join(command[2:])}", flush=True)
    with (prefix.parent / f"r{round_index}_{name}.log").open("w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    csv = requests_csv_path(str(prefix))
    if not csv.exists():
        raise SystemExit(f"{name}: locust exited {code} without {csv}; see {prefix}.log")
    total = summaries(read_records(csv))[-1]
    return VariantResult.from_summary(name, total, exit_code=code)


def pooled(results: list[VariantResult]) -> VariantResult:
    """Median of each metric over rounds; failures and exit codes add up."""
    def med(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    return VariantResult(
        name=results[0].name, requests=sum(r.requests for r in results), failures=sum(r.failures for r in results),
        cost_usd_per_answer=med([r.cost_usd_per_answer for r in results]),
        server_tokens_per_answer=med([r.server_tokens_per_answer for r in results]),
        p50_s=med([r.p50_s for r in results]), p95_s=med([r.p95_s for r in results]),
        answers_per_s=med([r.answers_per_s for r in results]), exit_code=max(r.exit_code for r in results))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="http://127.0.0.1:8000", help="The CoLM app's base URL.")
    parser.add_argument("--reference-server", default="gpt-conv", help="Specialist for the server-alone baseline.")
    parser.add_argument("-u", "--users", type=int, default=4)
    parser.add_argument("-r", "--spawn-rate", type=float, default=2)
    parser.add_argument("-t", "--run-time", default="60s", help="Per run, Locust's format (60s, 5m).")
    parser.add_argument("--rounds", type=int, default=1, help="Interleaved repetitions of the three runs.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="reports/compare", help="Folder for each run's CSVs, logs and reports.")
    parser.add_argument("--no-reports", dest="reports", action="store_false", help="Skip each run's HTML report.")
    parser.add_argument("locust_args", nargs=argparse.REMAINDER, help="After --: passed to every Locust run.")
    args = parser.parse_args(argv)
    args.locust_args = [a for a in args.locust_args if a != "--"]
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs: dict[str, list[VariantResult]] = {}
    for round_index in range(args.rounds):
        for name, variant_args in variants(args.reference_server).items():
            runs.setdefault(name, []).append(run_variant(args, name=name, variant_args=variant_args,
                                                         round_index=round_index))
    results = {name: pooled(rs) for name, rs in runs.items()}
    print()
    print(variant_table(list(results.values())))
    print()
    print(ratio_table(results))
    failed = [r.name for r in results.values() if r.failures or r.exit_code]
    if failed:
        print(f"\nruns with failures: {', '.join(failed)} (see the logs in {args.out})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""AlpacaEval's own readers and win rate over a colm-eval AlpacaEval folder.

Run by the official tools' Python (`.venv/official`, see README.md), never by the project's:

    python alpaca_eval_check.py MODEL_OUTPUTS REFERENCE_OUTPUTS JUDGE

MODEL_OUTPUTS is colm-eval's `<out>/alpaca_eval/<name>/model_outputs.json`, whose
annotations by JUDGE are `<name>/<judge>/annotations.json`: the folders `alpaca_eval
evaluate` itself reads and writes. On a copy of that folder (evaluate rewrites the
annotations and writes a leaderboard), this runs `alpaca_eval.evaluate` the way
`alpaca_eval evaluate --model_outputs ... --annotators_config JUDGE
--is_recompute_metrics_only` does, so AlpacaEval reads colm-eval's annotations instead of
calling an annotator, and also AlpacaEval's loaders and `metrics.get_winrate` directly. It
prints JSON: what the loaders read, the win rate and the leaderboard row.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd
from alpaca_eval import evaluate, metrics, utils


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def main(model_outputs: Path, reference_outputs: Path, judge: str) -> None:
    outputs = utils.load_or_convert_to_dataframe(model_outputs)
    reference = utils.load_or_convert_to_dataframe(reference_outputs)
    name = utils.get_generator_name(None, outputs)
    annotations = pd.read_json(model_outputs.parent / judge / "annotations.json")
    winrate = {k: _plain(v) for k, v in metrics.get_winrate(annotations).items()}

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / model_outputs.parent.name
        shutil.copytree(model_outputs.parent, folder)
        board = Path(tmp) / "leaderboard.csv"  # evaluate recomputes only the models its leaderboard lists
        pd.DataFrame({"mode": ["community"]}, index=[name]).to_csv(board)
        leaderboard, _ = evaluate(
            model_outputs=str(folder / "model_outputs.json"), reference_outputs=str(reference_outputs),
            annotators_config=judge, output_path="auto", precomputed_leaderboard=str(board),
            is_recompute_metrics_only=True, fn_metric="get_winrate", sort_by="win_rate",
            is_return_instead_of_print=True, is_cache_leaderboard=False,
        )
    print(json.dumps({
        "name": name,
        "columns": sorted(outputs.columns),
        "instructions": outputs["instruction"].tolist(),
        "reference_instructions": sorted(reference["instruction"]),
        "winrate": winrate,
        "leaderboard": {k: _plain(v) for k, v in leaderboard.loc[name].items() if not pd.isna(v)},
    }))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])

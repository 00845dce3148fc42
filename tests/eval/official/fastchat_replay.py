"""FastChat's own MT-Bench pipeline over a colm-eval folder, with the judge replaced by a replay.

Run by the official tools' Python (`.venv/official`, see README.md), never by the project's:

    python fastchat_replay.py DATA_DIR JUDGE FIRST_N OUT_FILE

DATA_DIR is colm-eval's `<out>/mt_bench` (FastChat's `data/mt_bench`; the judge prompts are
`<out>/judge_prompts.jsonl`, FastChat's `data/judge_prompts.jsonl`). This does what
`gen_judgment.py --mode single --judge-model JUDGE --first-n FIRST_N` does, with FastChat's
own functions: load the questions, answers and reference answers, check them
(`check_data`), make the matches and play them (`play_a_match_single`), writing FastChat's
judgment file to OUT_FILE. Only the judge call is replaced: it returns the judgment that
colm-eval recorded for the same user prompt, and fails when FastChat built a
prompt colm-eval never sent. It prints JSON: the answers as FastChat loaded them, the
models, and FastChat's judgments as it parsed them.

`fastchat.llm_judge.common` imports `fastchat.model.model_adapter` at its top for the judge
calls and model names; that module imports torch to load model weights, which none of the
code run here touches. It is registered as a small module with the names common.py and
fastchat/model/__init__.py import, so torch need not be installed.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path


class ReplayConversation:
    """What run_judge_single builds with FastChat's conversation template: the system and user prompts."""

    roles = ("user", "assistant")

    def __init__(self) -> None:
        self.system = ""
        self.messages: list[tuple[str, str | None]] = []

    def set_system_message(self, text: str) -> None:
        self.system = text

    def append_message(self, role: str, text: str | None) -> None:
        self.messages.append((role, text))


def _model_loading(*args, **kwargs):
    raise RuntimeError("model loading is not part of FastChat's judging readers")


adapter = types.ModuleType("fastchat.model.model_adapter")
adapter.get_conversation_template = lambda model: ReplayConversation()
adapter.load_model = adapter.add_model_args = _model_loading
adapter.OPENAI_MODEL_LIST = []
adapter.ANTHROPIC_MODEL_LIST = []
sys.modules["fastchat.model.model_adapter"] = adapter

from fastchat.llm_judge import common  # noqa: E402
from fastchat.llm_judge.gen_judgment import make_judge_single, make_match_single  # noqa: E402


def main(data_dir: Path, judge: str, first_n: int, out_file: Path) -> None:
    ours = [json.loads(line) for line in (data_dir / "model_judgment" / f"{judge}_single.jsonl").open()]
    recorded = {(r["judge"][0], r["user_prompt"]): r["judgment"] for r in ours}
    prompts = common.load_judge_prompts(str(data_dir.parent / "judge_prompts.jsonl"))

    def replay(model, conv, temperature, max_tokens, api_dict=None):
        return recorded[(model, conv.messages[0][1])]  # a KeyError: FastChat asks what colm-eval never did

    common.OPENAI_MODEL_LIST.append(judge)
    common.chat_completion_openai = replay

    questions = common.load_questions(str(data_dir / "question.jsonl"), None, None)[:first_n]
    answers = common.load_model_answers(str(data_dir / "model_answer"))
    # FastChat keys the reference answers by judge model: its references are GPT-4's, so its
    # own runs use them only with the gpt-4 judge. colm-eval uses them with any judge.
    references = {judge: common.load_model_answers(str(data_dir / "reference_answer"))["gpt-4"]}
    models = sorted(common.get_model_list(str(data_dir / "model_answer")))
    judges = make_judge_single(judge, prompts)
    common.check_data(questions, answers, references, models, judges)

    math = [q for q in questions if q["category"] in common.NEED_REF_CATS]
    default = [q for q in questions if q["category"] not in common.NEED_REF_CATS]
    matches = (make_match_single(default, models, answers, judges["default"])
               + make_match_single(math, models, answers, judges["math"], ref_answers=references)
               + make_match_single(default, models, answers, judges["default-mt"], multi_turn=True)
               + make_match_single(math, models, answers, judges["math-mt"], ref_answers=references, multi_turn=True))
    out_file.unlink(missing_ok=True)
    results = [common.play_a_match_single(m, output_file=str(out_file)) for m in matches]
    loaded = common.load_single_model_judgments(str(out_file))
    print(json.dumps({
        "models": models,
        "answers": {m: {str(q): a["choices"][0]["turns"] for q, a in answers[m].items()} for m in models},
        "judgments": [{"question_id": r["question_id"], "model": r["model"], "judge": list(r["judge"]),
                       "turn": r["turn"], "score": r["score"]} for r in results],
        "loaded": sum(len(games) for games in loaded.values()),
    }))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))

"""Up-front estimate of what a request will cost upstream, for budget admission.

Deliberately conservative (full output budgets, the highest price among the specialists):
a budget should refuse a request it might not afford rather than overrun.
"""

from __future__ import annotations

from colm_serve.accounting.ledger import Estimate
from colm_serve.collab.baselines import Target
from colm_serve.config import AppArgs
from colm_serve.protocol import ChatCompletionRequest

PROMPT_OVERHEAD_TOKENS = 80  # system prompt and delimiters around each upstream call


def estimate(args: AppArgs, target: Target, req: ChatCompletionRequest) -> Estimate:
    prompt = sum(len(m.text()) for m in req.messages) // 4 + PROMPT_OVERHEAD_TOKENS
    if target.kind == "client":
        return Estimate()
    if target.kind == "server":
        out = req.output_limit() or 512
        return Estimate(server_tokens=prompt + out, cost_usd=target.specialist.cost(prompt, out))
    opts, g, r = req.options(), args.guidance, args.refinement
    k = opts.top_k or args.selection.top_k
    rounds = 1 + (r.iterations if opts.iterations is None else opts.iterations)
    price_in = max(s.price_in_per_m for s in args.specialists)
    price_out = max(s.price_out_per_m for s in args.specialists)
    per_spec_in, per_spec_out = prompt, g.max_tokens
    summary_in = prompt + k * g.max_tokens + r.client_max_tokens
    fixed_in, fixed_out = rounds * summary_in, rounds * r.summary_max_tokens
    if (opts.selector or args.selection.strategy) == "llm":
        fixed_in, fixed_out = fixed_in + prompt + 40 * len(args.specialists), fixed_out + args.selection.max_tokens
    per_spec_cost = (per_spec_in * price_in + per_spec_out * price_out) / 1e6
    return Estimate(
        server_tokens=fixed_in + fixed_out + k * (per_spec_in + per_spec_out),
        cost_usd=(fixed_in * price_in + fixed_out * price_out) / 1e6 + k * per_spec_cost,
        per_specialist_tokens=per_spec_in + per_spec_out,
        per_specialist_cost=per_spec_cost,
        specialists=k,
    )

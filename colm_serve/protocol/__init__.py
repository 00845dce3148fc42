"""What crosses the router's edge, and what CoLM adds to it, one job a module.

- `openai`: the OpenAI wire models (chat request, response, chunk, model list, error body).
- `options`: the `colm` request options a chat request may carry.
- `usage`: the token and cost arithmetic that adds up across steps, rounds and requests.
- `trace`: what a collaboration did and why, returned on request.
- `caller`: who is asking, as the API layer found it.

Imports point one way: `openai` -> `options`; `trace` -> `usage`; nothing else here imports
a sibling.
"""

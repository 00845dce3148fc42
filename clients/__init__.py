"""Client applications of the CoLM router's HTTP API (chat, evaluation)."""

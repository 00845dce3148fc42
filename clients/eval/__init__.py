"""`colm-eval`: answer quality and cost of any model id at any OpenAI-compatible endpoint.

Generates answers for MT-Bench, Arena-Hard and AlpacaEval in each benchmark's own file
format, judges them with any OpenAI-compatible judge, and tabulates quality beside cost.
"""

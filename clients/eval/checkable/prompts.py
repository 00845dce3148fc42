"""The chat questions sent for each checkable task, kept apart from the loading and grading.

Each asks for the answer in the shape its grader reads: a final "#### <number>" line for
GSM8K (the dataset's own answer format), one fenced Python block for HumanEval and MBPP
(the block the official harnesses extract).
"""

GSM8K = (
    "Solve the following math problem. Reason step by step, then write the final answer "
    "as a number alone on the last line, in the form \"#### <number>\".\n\n"
    "Question: {question}"
)

HUMANEVAL = (
    "Complete the following Python function. Reply with the complete function (its "
    "signature included, and any imports it needs) in a single ```python fenced code block.\n\n"
    "```python\n{prompt}```"
)

# The evalplus MBPP prompt (the problem text and the first assert), which olmo-eval's
# codex_mbpp task also sends, with the reply format spelled out.
MBPP = (
    "Please provide a self-contained Python script that solves the following problem "
    "in a markdown code block:\n```\n{text}\n{first_test}\n```\n\n"
    "Reply with the function (and any imports it needs) in a single ```python fenced code block."
)

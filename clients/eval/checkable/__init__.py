"""Judge-free quality checks: GSM8K, HumanEval and MBPP problems, their graders (an exact
number, or unit tests run in a sandbox) and the statistics that compare routing arms."""

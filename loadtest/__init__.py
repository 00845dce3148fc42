"""CoLM load test: simulated client apps as Locust users, a report and a comparison runner.

Run `locust -f loadtest/ --host http://127.0.0.1:8000` (see loadtest/README.md). Locust
imports every .py file here whose name does not start with "_", so only `locustfile.py`
defines users; the helpers are `_`-prefixed, and `report.py` / `compare.py` are plain
command modules with no users and no import-time side effects.
"""

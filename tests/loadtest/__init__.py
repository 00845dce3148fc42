"""Tests of the load test (loadtest/) against a fake CoLM server, and one against the real app."""

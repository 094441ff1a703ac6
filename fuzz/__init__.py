"""Fuzzing the HTTP API from its OpenAPI document (schemathesis); see ``fuzz.harness``."""

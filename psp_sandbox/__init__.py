"""A sandbox payment service provider (PSP): an HTTP/JSON card network for development and tests.

Its own process (`python -m psp_sandbox`), its own PostgreSQL schema (`psp_sandbox`), shaped like a
real PSP's API; test tokens choose the outcome (see `psp_sandbox.tokens`). Never used in production.
"""

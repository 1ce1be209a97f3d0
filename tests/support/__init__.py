"""What the tests share, one implementation each: HTTP client (`http`), processes (`processes`),
databases (`databases`), the whole system as processes (`system`), the schemathesis runner
(`schemathesis`), the stub upstream and its steering (`stub_service`, `stubs`), users signed up
through the gateway (`users`), waiting for background work (`waiting`), problem details (`problems`).

Conftests hold fixtures and import what they need from here; test modules import from here (or from
their folder's `support.py`), never from a conftest.
"""

"""The scenarios: the eight of issue 6, 9 (abuse) of issue 14, 10 (search) of issue 17 and 11 (request
cost), 12 (ASGI servers), 13 (HTTP clients for the upstream hop) and 14 (end to end against
e078198) of issue 18.

Each module defines one `SCENARIO`; `ALL` lists them in order.
"""

from __future__ import annotations

from bench.scenarios import (
    s1_nginx,
    s2_overhead,
    s3_orm,
    s4_hot_views,
    s5_deep_pages,
    s6_cascade,
    s7_login_storm,
    s8_memory,
    s9_abuse,
    s10_search,
    s11_cost,
    s12_servers,
    s13_clients,
    s14_end_to_end,
)
from bench.scenarios.base import Scenario

ALL: list[Scenario] = [
    module.SCENARIO
    for module in (
        s1_nginx,
        s2_overhead,
        s3_orm,
        s4_hot_views,
        s5_deep_pages,
        s6_cascade,
        s7_login_storm,
        s8_memory,
        s9_abuse,
        s10_search,
        s11_cost,
        s12_servers,
        s13_clients,
        s14_end_to_end,
    )
]

"""iggy-cli 0.14.0, every command group, against one galgod over TCP, QUIC, HTTP and WebSocket."""

from __future__ import annotations

import pytest

from conftest import TRANSPORTS, Cli
from groups import GROUPS, run_group, xfail_param


@pytest.mark.parametrize("group,transport", [xfail_param(g, t) for t in TRANSPORTS for g in GROUPS])
def test_command_group(single, home, group, transport):
    run_group(group, Cli(single, transport, home), transport, [single])

from __future__ import annotations

import json
import logging

from devhost.logs import JsonFormatter


def test_log_lines_are_json_with_the_function_and_instance_they_belong_to() -> None:
    record = logging.LogRecord("devhost", logging.ERROR, __file__, 1, "failed %s", ("x",), None)
    record.function = "place_order"
    record.instance_id = "int-abc"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed x"
    assert line["level"] == "error"
    assert line["function"] == "place_order"
    assert line["instance_id"] == "int-abc"
    assert line["ts"].endswith("+00:00")
    assert "partition" not in line

"""JSON logs to stdout, one object a line, the same for every part."""

from __future__ import annotations

import json
import logging
import sys
import time

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, part: str):
        super().__init__()
        self.part = part

    _second: int = -1
    _stamp: str = ""

    def format(self, record: logging.LogRecord) -> str:
        # A busy part logs many lines a second (the gateway's access log, one a call):
        # the date is formatted once per second, not per line.
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry = {
            "ts": f"{self._stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "part": self.part,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(part: str, level: str = "INFO") -> None:
    # What the JSON lines never show is not gathered for each record (the logging docs'
    # "Optimization"): the caller's file and line (a stack walk per record), thread and
    # process names.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(part))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("alembic", "urllib3", "botocore", "nats", "httpx", "lightning", "git"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))

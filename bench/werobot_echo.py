"""The reference: a WeRoBot echo bot (the textbook example), one process.

It checks the signature, parses the XML and answers a text message with its
own text, like ``@robot.text def echo(message): return message.content`` in
WeRoBot's documentation. Sessions are off (an echo bot keeps no state).

It is served by waitress, a production-grade multi-threaded WSGI server with
HTTP/1.1 keep-alive; WeRoBot's own ``robot.run()`` goes through bottle's
``auto`` adapter, which picks waitress first when it is installed, so this is
what ``robot.run()`` would give too, minus bottle's start-up banner. wsgiref
(bottle's last resort) speaks HTTP/1.0 without keep-alive and would be
unfairly slow.

It runs in its own virtualenv (bench/.refenv, made by bench/webhook.py), not
in the project's: ``bench/.refenv/bin/python bench/werobot_echo.py --port P --token T``
"""

from __future__ import annotations

import argparse
import logging

import waitress
from werobot import WeRoBot


def make_robot(token: str) -> WeRoBot:
    robot = WeRoBot(token=token)
    robot.config["SESSION_STORAGE"] = False

    @robot.text
    def echo(message):
        return message.content

    @robot.handler
    def other(message):
        return "success"

    return robot


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    # waitress warns "Task queue depth is N" whenever all threads are busy: noise under load.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    waitress.serve(
        make_robot(args.token).wsgi, host="127.0.0.1", port=args.port, threads=args.threads,
        connection_limit=256, _quiet=True, ident="werobot-echo",
    )

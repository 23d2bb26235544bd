"""The ceiling: a bare Tornado handler that answers every POST to /wechat with
``success`` (no signature check, no parsing, no storage). One process.

``python bench/bare_tornado.py --port P``
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import tornado.web


class Bare(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("ok")

    def post(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.write("success")


async def main(port: int) -> None:
    app = tornado.web.Application([(r"/wechat", Bare), (r"/healthz", Bare)])
    app.listen(port, "127.0.0.1")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))

"""Start one os-ken app: `python -m controllers.run <module> --port P --config FILE`.

os-ken has no manager command that works here; this is its minimal equivalent. OpenFlow
listens on 127.0.0.1 only. Prints "controller listening" once switches can connect. The
configuration may come later than the process: it waits for the file (see below).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("module", help="the app's module, e.g. controllers.fwlb.app")
    parser.add_argument("--port", type=int, required=True, help="OpenFlow port on 127.0.0.1")
    parser.add_argument("--config", required=True, help="the app's JSON configuration")
    args = parser.parse_args(argv)
    os.environ["SESSIONLAB_APP_CONFIG"] = args.config

    from os_ken.lib import hub

    hub.patch(thread=False)
    # Order matters: AppManager first (importing the controller module first is circular),
    # then the controller module registers the OpenFlow listen options, then cfg.CONF().
    from os_ken.base.app_manager import AppManager

    hub.patch(thread=False)  # a no-op the second time; keeps the imports in their order
    import importlib

    import os_ken.controller.controller  # noqa: F401
    from os_ken import cfg

    try:
        importlib.import_module(args.module)
    except ImportError as exc:
        print(f"controllers.run: cannot load app {args.module}: {exc}", file=sys.stderr, flush=True)
        return 2
    # Loading os-ken takes about half a second: a lab starts this process while Mininet
    # builds the network and writes the configuration (atomically) once it is built.
    config = Path(args.config)
    deadline = time.monotonic() + 60
    while not config.exists():
        if time.monotonic() > deadline:
            print(f"controllers.run: no configuration {config} within 60 s", file=sys.stderr, flush=True)
            return 2
        time.sleep(0.01)
    cfg.CONF(args=[], project="os_ken")
    cfg.CONF.set_override("ofp_listen_host", "127.0.0.1")
    cfg.CONF.set_override("ofp_tcp_listen_port", args.port)

    def announce() -> None:
        for _ in range(600):  # 30 s at most
            try:
                socket.create_connection(("127.0.0.1", args.port), timeout=0.2).close()
            except OSError:
                hub.sleep(0.05)
                continue
            print("controller listening", flush=True)
            return
        print("controllers.run: OpenFlow never started listening", file=sys.stderr, flush=True)
        os._exit(1)

    hub.spawn(announce)
    AppManager.run_apps([args.module])
    return 0


if __name__ == "__main__":
    sys.exit(main())

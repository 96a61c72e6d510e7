"""The ``facebus`` command: one subcommand per service and tool. It parses and dispatches, nothing else.

    facebus publisher --source VIDEO|DIR|URL|INDEX [--device-id ID] ...
    facebus recognizer [--gallery DIR|s3://bucket/prefix] [--tolerance 0.58] ...
    facebus archiver [--influx-url URL] [--crops-dir DIR] ...
    facebus live        the live page: annotated camera views, latest events and access decisions (docs/live.md)
    facebus demo        the whole pipeline on the bundled clip, with private Mosquitto and InfluxDB
    facebus faces add|remove|move|list|import|identify|forget|visitors|promote|search …   gallery and visitors
    facebus grafana push --url URL --token TOKEN     datasource + dashboards to a running Grafana
    facebus broker init|add-camera|remove-camera|list DIR …   a Mosquitto config with TLS, accounts and an ACL
    facebus schema      print the face-event JSON Schema (docs/schemas/face-event.v3.json)

Every flag also reads from its environment variable (shown in --help), from the files given with ``--env-file``
(e.g. a service's MQTT credentials written by ``facebus broker``) and from ``.env``; flags win, then the
environment, then the ``--env-file`` files in order, then ``.env``.
An invalid setting ends the program with one message per bad key and exit code 2.

A service is ``<module>.main(config, stop)`` with ``config`` the bundle of settings it reads (facebus.settings
``*Config``); a tool is ``<module>.add_arguments(parser)`` and ``<module>.main(args)``. Modules are imported only
for the command that runs (a tool's module imports only the base dependencies at import time, for its --help).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from dotenv import load_dotenv
from pydantic import ValidationError

from facebus import log as logsetup
from facebus import settings as cfg

EXIT_CONFIG = 2

# command → (module with main(config, stop), settings bundle, help)
SERVICES = {
    "publisher": ("publisher.service", cfg.PublisherConfig,
                  "publish frames from a webcam, stream, video file or image folder"),
    "recognizer": ("recognizer.service", cfg.RecognizerConfig,
                   "name the faces in every device's frames and publish face events"),
    "archiver": ("archiver.service", cfg.ArchiverConfig,
                 "write throttled face entries to InfluxDB and keep their crops"),
    "live": ("recognizer.live", cfg.LiveConfig,
             "serve the live page: every camera's annotated view, the latest events and decisions"),
}
# command → (module with add_arguments(parser) and main(args), help)
TOOLS = {
    "demo": ("facebus_tools.demo", "run the whole pipeline on the bundled clip and print the archived entries"),
    "faces": ("facebus_tools.faces", "manage the face gallery and the visitors (add, remove, list, promote, search …)"),
    "grafana": ("facebus_tools.grafana", "push the InfluxDB datasource and the dashboards to a running Grafana"),
    "broker": ("facebus_tools.broker", "write a secured Mosquitto configuration: TLS, accounts, ACL"),
}
# command → the extra of pyproject.toml that installs what it imports (tests/integration/test_extras.py)
EXTRAS = {"publisher": "publisher", "recognizer": "recognizer", "archiver": "archiver", "live": "recognizer",
          "demo": "demo", "faces": "faces", "grafana": "grafana", "broker": "broker"}
# Tools whose stdout is their result log to stderr; services log to stdout.
_STDOUT_RESULT = ("faces", "schema", "broker")


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _schema(args: argparse.Namespace) -> int:
    from facebus.events import json_schema_text

    sys.stdout.write(json_schema_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facebus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cfg.add_arguments(parser, cfg.LogSettings)
    parser.add_argument(
        "--env-file", action="append", default=[], metavar="FILE",
        help="read settings from this env file too, before .env (repeatable), e.g. credentials/recognizer.env",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, config, help_text) in SERVICES.items():
        p = sub.add_parser(name, help=help_text)
        cfg.add_config_arguments(p, config)
        p.set_defaults(service=(module, config))
    for name, (module, help_text) in TOOLS.items():
        p = sub.add_parser(name, help=help_text)
        tool = importlib.import_module(module)
        tool.add_arguments(p)
        p.set_defaults(tool=tool)
    sub.add_parser("schema", help="print the face-event JSON Schema").set_defaults(tool=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The files also feed libraries that read only the environment (boto3's AWS_*); variables already set win.
    for env_file in args.env_file:
        if not load_dotenv(env_file, override=False) and not os.path.isfile(env_file):
            print(f"facebus: env file {env_file} not found", file=sys.stderr)
            return EXIT_CONFIG
    load_dotenv(".env", override=False)
    try:
        logsetup.setup(cfg.load(cfg.LogSettings, args), sys.stderr if args.command in _STDOUT_RESULT else sys.stdout)
        if hasattr(args, "service"):
            module, config = args.service
            return importlib.import_module(module).main(cfg.load_config(config, args), _stop_on_signals())
        return args.tool.main(args) if args.tool is not None else _schema(args)
    except ValidationError as exc:
        for line in cfg.explain(exc):
            print(f"facebus {args.command}: {line}", file=sys.stderr)
        return EXIT_CONFIG
    except ModuleNotFoundError as exc:  # installed without the command's extra
        print(f"facebus {args.command}: needs {exc.name}, which this install lacks: "
              f"pip install 'facebus[{EXTRAS.get(args.command, 'dev')}]'", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())

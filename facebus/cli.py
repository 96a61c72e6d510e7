"""The ``facebus`` command: one subcommand per service and tool.

    facebus publisher --source VIDEO|DIR|URL|INDEX [--device-id ID] ...
    facebus recognizer [--gallery DIR|s3://bucket/prefix] [--tolerance 0.58] ...
    facebus archiver [--influx-url URL] [--crops-dir DIR] ...
    facebus live        the live page: annotated camera views, latest events and access decisions (docs/live.md)
    facebus demo        the whole pipeline on the bundled clip, with private Mosquitto and InfluxDB
    facebus faces add|remove|move|list|import|identify|forget …   the face gallery (folder or S3) from the CLI
    facebus grafana push --url URL --token TOKEN     datasource + dashboards to a running Grafana
    facebus broker init|add-camera|remove-camera|list DIR …   a Mosquitto config with TLS, accounts and an ACL
    facebus schema      print the face-event JSON Schema (docs/schemas/face-event.v3.json)

Every flag also reads from its environment variable (shown in --help), from the files given with ``--env-file``
(e.g. a service's MQTT credentials written by ``facebus broker``) and from ``.env``; flags win, then the
environment, then the ``--env-file`` files in order, then ``.env``.
An invalid setting ends the program with one message per bad key and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from dotenv import load_dotenv
from pydantic import ValidationError

from facebus import log as logsetup
from facebus import settings as cfg
from facebus.topics import Topics

log = logging.getLogger("facebus")

EXIT_CONFIG = 2


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def cmd_publisher(args: argparse.Namespace) -> int:
    from facebus.mqtt import MqttClient
    from publisher import service

    mqtt_settings, settings = cfg.load(cfg.MqttSettings, args), cfg.load(cfg.PublisherSettings, args)
    availability = Topics(mqtt_settings.topic_prefix).device_availability(settings.device_id)
    mqtt = MqttClient(mqtt_settings, availability, f"publisher-{settings.device_id}")
    try:
        service.run(settings, mqtt, _stop_on_signals())
    except (FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 1
    return 0


def cmd_recognizer(args: argparse.Namespace) -> int:
    from recognizer import service

    return service.main(cfg.load(cfg.MqttSettings, args), cfg.load(cfg.RecognizerSettings, args),
                        cfg.load(cfg.StatsSettings, args).interval_s, _stop_on_signals(),
                        cfg.load(cfg.AccessSettings, args), cfg.load(cfg.WebhookSettings, args),
                        cfg.load(cfg.VisitorSettings, args))


def cmd_archiver(args: argparse.Namespace) -> int:
    from archiver import service

    return service.main(cfg.load(cfg.MqttSettings, args), cfg.load(cfg.InfluxSettings, args),
                        cfg.load(cfg.ArchiverSettings, args), cfg.load(cfg.StatsSettings, args).interval_s,
                        _stop_on_signals())


def cmd_demo(args: argparse.Namespace) -> int:
    from facebus import demo

    return demo.main(args)


def cmd_faces(args: argparse.Namespace) -> int:
    from recognizer import manage

    return manage.main(args)


def cmd_grafana(args: argparse.Namespace) -> int:
    from facebus import grafana

    return grafana.main(args)


def cmd_live(args: argparse.Namespace) -> int:
    from recognizer import live

    return live.main(cfg.load(cfg.MqttSettings, args), cfg.load(cfg.LiveSettings, args), _stop_on_signals())


def cmd_broker(args: argparse.Namespace) -> int:
    from facebus import broker

    return broker.main(args)


def cmd_schema(args: argparse.Namespace) -> int:
    from facebus.events import json_schema_text

    sys.stdout.write(json_schema_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facebus", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--log-level", type=str.upper, choices=logsetup.LEVELS, help="default INFO [env FACEBUS_LOG_LEVEL]"
    )
    parser.add_argument(
        "--env-file", action="append", default=[], metavar="FILE",
        help="read settings from this env file too, before .env (repeatable), e.g. credentials/recognizer.env",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("publisher", help="publish frames from a webcam, stream, video file or image folder")
    cfg.add_arguments(p, cfg.PublisherSettings)
    cfg.add_arguments(p, cfg.MqttSettings)
    p.set_defaults(func=cmd_publisher)

    p = sub.add_parser("recognizer", help="name the faces in every device's frames and publish face events")
    cfg.add_arguments(p, cfg.RecognizerSettings)
    cfg.add_arguments(p, cfg.AccessSettings)
    cfg.add_arguments(p, cfg.VisitorSettings)
    cfg.add_arguments(p, cfg.WebhookSettings)
    cfg.add_arguments(p, cfg.StatsSettings)
    cfg.add_arguments(p, cfg.MqttSettings)
    p.set_defaults(func=cmd_recognizer)

    p = sub.add_parser("archiver", help="write throttled face entries to InfluxDB and keep their crops")
    cfg.add_arguments(p, cfg.ArchiverSettings)
    cfg.add_arguments(p, cfg.StatsSettings)
    cfg.add_arguments(p, cfg.InfluxSettings)
    cfg.add_arguments(p, cfg.MqttSettings)
    p.set_defaults(func=cmd_archiver)

    p = sub.add_parser("live", help="serve the live page: every camera's annotated view, the latest events and decisions")
    cfg.add_arguments(p, cfg.LiveSettings)
    cfg.add_arguments(p, cfg.MqttSettings)
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("demo", help="run the whole pipeline on the bundled clip and print the archived entries")
    p.add_argument("--state-dir", default=".state/demo", help="where the demo's servers keep their data and crops")
    p.add_argument("--video", default="samples/faces-dev/video/short_hamilton_clip.mp4")
    p.add_argument("--gallery", default="samples/gallery")
    p.add_argument("--speed", type=float, default=1.0, help="playback speed of the clip (1 = real time)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("faces", help="manage the face gallery (add, remove, move, list, import, identify, forget)")
    from recognizer import manage

    manage.add_arguments(p)
    p.set_defaults(func=cmd_faces)

    p = sub.add_parser("grafana", help="push the InfluxDB datasource and the dashboards to a running Grafana")
    from facebus import grafana

    grafana.add_arguments(p)
    p.set_defaults(func=cmd_grafana)

    p = sub.add_parser("broker", help="write a secured Mosquitto configuration: TLS, accounts, ACL")
    from facebus import broker

    broker.add_arguments(p)
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("schema", help="print the face-event JSON Schema")
    p.set_defaults(func=cmd_schema)
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
        logsetup.setup(args.log_level, sys.stderr if args.command in ("faces", "schema", "broker") else sys.stdout)
        return args.func(args)
    except ValidationError as exc:
        for line in cfg.explain(exc):
            print(f"facebus {args.command}: {line}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())

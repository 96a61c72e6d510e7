"""Settings precedence (flags > env > .env > defaults) and config errors (facebus.settings, facebus_tools.cli)."""

import logging
import os
from pathlib import Path

import pytest

from facebus import settings as cfg
from facebus_tools.cli import EXIT_CONFIG, build_parser, main


@pytest.fixture(autouse=True)
def clean(tmp_path, monkeypatch):
    """No FACEBUS_* variables from the outside, an empty working folder, and the root logger restored after main()."""
    for name in list(os.environ):
        if name.startswith("FACEBUS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def parse(*argv):
    return build_parser().parse_args(list(argv))


def test_defaults():
    mqtt = cfg.load(cfg.MqttSettings, parse("recognizer"))
    assert (mqtt.host, mqtt.port, mqtt.topic_prefix) == ("127.0.0.1", 1883, "facebus")
    recognizer = cfg.load(cfg.RecognizerSettings, parse("recognizer"))
    assert (recognizer.model, recognizer.tolerance, recognizer.margin) == ("yunet-sface", None, None)
    assert recognizer.thresholds("yunet-sface") == cfg.MODEL_DEFAULTS["yunet-sface"]
    assert recognizer.thresholds("dlib").tolerance == 0.58
    custom = cfg.RecognizerSettings(tolerance=0.9, min_face_px=40)
    assert (custom.thresholds("dlib").tolerance, custom.thresholds("dlib").min_face_px) == (0.9, 40)
    assert custom.thresholds("dlib").margin == cfg.MODEL_DEFAULTS["dlib"].margin


def test_dotenv_read(tmp_path):
    (tmp_path / ".env").write_text("FACEBUS_MQTT_PORT=1884\nFACEBUS_RECOGNIZER_TOLERANCE=0.5\nOTHER_KEY=x\n")
    assert cfg.load(cfg.MqttSettings, parse("recognizer")).port == 1884
    assert cfg.load(cfg.RecognizerSettings, parse("recognizer")).tolerance == 0.5


def test_env_wins_over_dotenv(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("FACEBUS_MQTT_PORT=1884\nFACEBUS_MQTT_HOST=from-dotenv\n")
    monkeypatch.setenv("FACEBUS_MQTT_PORT", "1885")
    mqtt = cfg.load(cfg.MqttSettings, parse("recognizer"))
    assert mqtt.port == 1885
    assert mqtt.host == "from-dotenv"


def test_flags_win_over_env(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("FACEBUS_MQTT_PORT=1884\n")
    monkeypatch.setenv("FACEBUS_MQTT_PORT", "1885")
    monkeypatch.setenv("FACEBUS_PUBLISHER_DEVICE_ID", "from-env")
    monkeypatch.setenv("FACEBUS_PUBLISHER_LOOP", "true")
    args = parse("publisher", "--source", "clip.mp4", "--mqtt-port", "1886", "--device-id", "door1", "--no-loop")
    assert cfg.load(cfg.MqttSettings, args).port == 1886
    publisher = cfg.load(cfg.PublisherSettings, args)
    assert (publisher.source, publisher.device_id, publisher.loop) == ("clip.mp4", "door1", False)


def test_archiver_flags():
    args = parse("archiver", "--throttle-s", "5", "--influx-url", "http://db:8086", "--influx-api", "v1")
    assert cfg.load(cfg.ArchiverSettings, args).throttle_s == 5.0
    influx = cfg.load(cfg.InfluxSettings, args)
    assert (influx.url, influx.api) == ("http://db:8086", "v1")


def test_literal_flag_choices_enforced(capsys):
    with pytest.raises(SystemExit) as exc:
        parse("archiver", "--influx-api", "v3")
    assert exc.value.code == 2


def test_empty_cache_dir_disables_cache(monkeypatch):
    monkeypatch.setenv("FACEBUS_RECOGNIZER_CACHE_DIR", "")
    assert cfg.load(cfg.RecognizerSettings, parse("recognizer")).cache_dir is None


def test_cache_dir_default_and_set(monkeypatch):
    assert cfg.load(cfg.RecognizerSettings, parse("recognizer")).cache_dir == Path("~/.cache/facebus/encodings")
    monkeypatch.setenv("FACEBUS_RECOGNIZER_CACHE_DIR", "/tmp/enc")
    assert cfg.load(cfg.RecognizerSettings, parse("recognizer")).cache_dir == Path("/tmp/enc")


def test_names():
    assert cfg.flag_name(cfg.MqttSettings, "port") == "--mqtt-port"
    assert cfg.env_name(cfg.MqttSettings, "port") == "FACEBUS_MQTT_PORT"
    assert cfg.flag_name(cfg.PublisherSettings, "device_id") == "--device-id"
    assert cfg.env_name(cfg.PublisherSettings, "device_id") == "FACEBUS_PUBLISHER_DEVICE_ID"


@pytest.mark.parametrize(
    "argv, env, flag, got",
    [
        (["publisher", "--source", "x", "--mqtt-port", "70000"], "FACEBUS_MQTT_PORT", "--mqtt-port", "'70000'"),
        (["recognizer", "--tolerance", "abc"], "FACEBUS_RECOGNIZER_TOLERANCE", "--tolerance", "'abc'"),
        (["publisher", "--source", "x", "--device-id", "bad id"], "FACEBUS_PUBLISHER_DEVICE_ID", "--device-id",
         "'bad id'"),
        (["recognizer", "--mqtt-topic-prefix", "a/#"], "FACEBUS_MQTT_TOPIC_PREFIX", "--mqtt-topic-prefix", "'a/#'"),
        (["archiver", "--batch-size", "0"], "FACEBUS_ARCHIVER_BATCH_SIZE", "--batch-size", "'0'"),
    ],
)
def test_invalid_flag_exits_2_naming_env_and_flag(capsys, argv, env, flag, got):
    assert main(argv) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"facebus {argv[0]}: invalid setting {env} / {flag}: " in err
    assert f"(got {got})" in err


def test_invalid_env_exits_2(capsys, monkeypatch):
    monkeypatch.setenv("FACEBUS_MQTT_PORT", "0")
    assert main(["publisher", "--source", "x"]) == EXIT_CONFIG
    assert "invalid setting FACEBUS_MQTT_PORT / --mqtt-port" in capsys.readouterr().err


def test_a_bad_log_json_is_named_by_its_own_variable_and_flag(capsys, monkeypatch):
    """The field json_lines reads FACEBUS_LOG_JSON (an alias): the message names that variable and --log-json."""
    monkeypatch.setenv("FACEBUS_LOG_JSON", "maybe")
    assert main(["schema"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "invalid setting FACEBUS_LOG_JSON / --log-json: " in err and "(got 'maybe')" in err
    assert "FACEBUS_LOG_FACEBUS_LOG_JSON" not in err


def test_log_json_flag_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("FACEBUS_LOG_JSON", "1")
    args = build_parser().parse_args(["--no-log-json", "schema"])
    assert cfg.load(cfg.LogSettings, args).json_lines is False


def test_missing_source_exits_2(capsys):
    assert main(["publisher"]) == EXIT_CONFIG
    assert "FACEBUS_PUBLISHER_SOURCE / --source: Field required" in capsys.readouterr().err


def test_several_bad_settings_one_line_each(capsys):
    assert main(["recognizer", "--tolerance", "3", "--margin", "-1"]) == EXIT_CONFIG
    lines = [line for line in capsys.readouterr().err.splitlines() if "invalid setting" in line]
    assert len(lines) == 2
    assert any("--tolerance" in line for line in lines) and any("--margin" in line for line in lines)


def test_log_level_flag_wins_over_env(monkeypatch, capsys):
    monkeypatch.setenv("FACEBUS_LOG_LEVEL", "ERROR")
    assert main(["--log-level", "DEBUG", "schema"]) == 0
    assert main(["--log-level", "debug", "schema"]) == 0
    assert logging.getLogger().level == logging.DEBUG


def test_invalid_log_level_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--log-level", "nope", "schema"])
    assert exit_info.value.code == EXIT_CONFIG
    assert "--log-level" in capsys.readouterr().err


def test_env_example_documents_every_setting():
    """Users configure from .env.example: a setting missing there is a setting nobody finds."""
    text = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    variables = {line.split("=", 1)[0] for line in text.splitlines() if "=" in line and not line.startswith("#")}
    for cls in cfg.ALL_SETTINGS:
        for name, field in cls.model_fields.items():
            assert (field.validation_alias or cfg.env_name(cls, name)) in variables, f"{cls.__name__}.{name}"


def test_every_model_the_setting_accepts_has_thresholds():
    from typing import get_args

    assert set(get_args(cfg.RecognizerSettings.model_fields["model"].annotation)) == set(cfg.MODEL_DEFAULTS)

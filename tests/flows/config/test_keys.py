"""One reader, one key list, defaults written once: config and profile errors carry their key
path as data; PARAMETER_KEYS drives profile, inline-parameter and override validation alike;
what a config leaves out is the Bus/Device dataclasses' default."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from connectors.bus import Bus, Device
from connectors.codec import Codec
from connectors.parameter import DEFAULT_KEYS, KEY_NAMES, PARAMETER_KEYS, Key, Parameter
from connectors.registers import ProfileError, load_profile
from flows.config import ConfigError, load_config

CONFIG = """
[[bus]]
name = "gw"
url = "tcp://10.0.0.5:502"

  [[bus.device]]
  name = "d"
  address = 7
{device}

[[sink]]
kind = "csv"
path = "out/x.csv"
"""
# A valid parameter, and per key the lines that give it a value of its own.
BASE = {"name": '"v"', "table": '"input"', "address": "4", "type": '"uint16"'}
WITH_KEY: dict[str, dict[str, str]] = {
    "name": {"name": '"other"'},
    "table": {"table": '"holding"'},
    "address": {"address": "9"},
    "type": {"type": '"float32"'},
    "id": {"id": "17"},
    "byte_order": {"byte_order": '"BADC"'},
    "word_order": {"word_order": '"little"'},
    "scale": {"scale": "0.5"},
    "offset": {"offset": "-3"},
    "unit": {"unit": '"degC"'},
    "length": {"type": '"string"', "length": "3"},
    "bit": {"type": '"bit"', "bit": "5"},
    "byte": {"type": '"uint8"', "byte": '"high"'},
    "labels": {"labels": '{ 1 = "on" }'},
    "quantity": {"quantity": '"temperature"'},
    "range": {"range": "[-5, 100.5]"},
    "every_s": {"every_s": '"connect"'},
    "deadband": {"deadband": "0.5"},
    "deadband_pct": {"deadband_pct": "2"},
    "heartbeat_s": {"heartbeat_s": "60"},
}


def lines(entry: dict[str, str], indent: str = "") -> str:
    return "".join(f"{indent}{key} = {value}\n" for key, value in entry.items())


def config(tmp_path: Path, device: str) -> Path:
    path = tmp_path / "acquire.toml"
    path.write_text(CONFIG.format(device=device))
    return path


def inline(tmp_path: Path, entry: dict[str, str]) -> Parameter:
    text = "    [[bus.device.parameter]]\n" + lines(entry, "    ")
    (device,) = load_config(config(tmp_path, text)).buses[0].devices
    (p,) = device.parameters
    return p


def profile(
    tmp_path: Path, entry: dict[str, str], defaults: dict[str, str] | None = None, name: str = "p"
) -> Path:
    """A profile file (profiles are cached by path: a new content needs a new ``name``)."""
    path = tmp_path / f"{name}.toml"
    head = 'name = "t"\n' + (f"[defaults]\n{lines(defaults)}" if defaults else "")
    path.write_text(head + "[[parameter]]\n" + lines(entry))
    return path


def test_every_key_is_a_key_somewhere() -> None:
    assert set(WITH_KEY) == set(KEY_NAMES), "give a new key a value in WITH_KEY"
    # The keys are the fields of a Parameter and its Codec, and the word_order alias.
    own = {f.name for f in dataclasses.fields(Parameter) if f.name != "codec"}
    assert set(KEY_NAMES) == own | {f.name for f in dataclasses.fields(Codec)} | {"word_order"}
    assert [k.name for k in PARAMETER_KEYS if k.required] == ["name", "table", "address", "type"]


@pytest.mark.parametrize("key", PARAMETER_KEYS, ids=lambda k: k.name)
def test_one_key_list_drives_profiles_inline_parameters_and_overrides(
    tmp_path: Path, key: Key
) -> None:
    """A key of PARAMETER_KEYS is accepted, with one meaning, by a profile's [[parameter]],
    a config's [[bus.device.parameter]], [defaults] (if a default key) and an override (if
    one may change it)."""
    entry = {**BASE, **WITH_KEY[key.name]}
    from_profile = load_profile(profile(tmp_path, entry)).parameters[0]
    assert inline(tmp_path, entry) == from_profile
    if key.default:
        given = {key.name: entry[key.name]}
        rest = {k: v for k, v in entry.items() if k != key.name}
        by_default = load_profile(profile(tmp_path, rest, given, name="defaults"))
        assert by_default.parameters[0] == from_profile
    changes = {k: v for k, v in WITH_KEY[key.name].items() if k != "name"}
    assert key.override == bool(changes) or key.name == "name"
    if key.override:
        profile(tmp_path, BASE, name="base")
        device = f'  profile = "base.toml"\n    [bus.device.override.v]\n{lines(changes, "    ")}'
        (d,) = load_config(config(tmp_path, device)).buses[0].devices
        assert d.parameters[0] == from_profile


def test_unknown_keys_list_the_one_key_list(tmp_path: Path) -> None:
    expected = f"unknown key; expected one of {', '.join(KEY_NAMES)}"
    with pytest.raises(ProfileError) as info:
        load_profile(profile(tmp_path, {**BASE, "adress": "1"}))
    assert (info.value.path, info.value.message) == ("parameter[0].adress", expected)
    with pytest.raises(ConfigError) as caught:
        inline(tmp_path, {**BASE, "adress": "1"})
    assert (caught.value.path, caught.value.message) == (
        "bus[0].device[0].parameter[0].adress",
        expected,
    )
    with pytest.raises(ProfileError) as info:
        load_profile(profile(tmp_path, BASE, {"address": "1"}, name="defaults"))
    assert info.value.message == f"unknown key; expected one of {', '.join(DEFAULT_KEYS)}"


def test_config_errors_carry_their_key_path(tmp_path: Path) -> None:
    path = config(tmp_path, "  profile = 'watlow_pm'\n").read_text().replace("= 7", "= 300")
    (tmp_path / "acquire.toml").write_text(path)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "acquire.toml")
    error = info.value
    assert (error.file, error.path, error.message) == (
        str(tmp_path / "acquire.toml"),
        "bus[0].device[0].address",
        "300 is not a Modbus unit id (1-247)",
    )
    assert str(error) == f"{error.file}: {error.path}: {error.message}"
    # A bad key inside a label of an override: the whole path is data.
    device = "  profile = 'watlow_pm'\n    [bus.device.override.input_error]\n"
    with pytest.raises(ConfigError) as info:
        load_config(config(tmp_path, device + "    labels = { ok = 'x' }\n"))
    assert info.value.path == "bus[0].device[0].override.input_error.labels.ok"
    assert info.value.message == "'ok' is not an integer"
    # A file-level error has no path.
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert (info.value.path, info.value.file) == ("", str(tmp_path / "nope.toml"))


def test_a_broken_profile_in_a_config_keeps_its_own_path(tmp_path: Path) -> None:
    profile(tmp_path, {**BASE, "type": '"int24"'})
    with pytest.raises(ConfigError) as info:
        load_config(config(tmp_path, '  profile = "p.toml"\n'))
    assert info.value.path == "bus[0].device[0].profile"
    cause = info.value.__cause__
    assert isinstance(cause, ProfileError)
    assert (cause.file, cause.path) == (str(tmp_path / "p.toml"), "parameter[0].type")
    assert info.value.message == str(cause)


def defaults(cls: type, names: set[str]) -> dict[str, object]:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name in names}
    assert set(fields) == names and all(
        f.default is not dataclasses.MISSING for f in fields.values()
    )
    return {name: f.default for name, f in fields.items()}


def test_defaults_come_from_the_dataclasses(tmp_path: Path) -> None:
    """A config that leaves the timing keys out gets the Bus/Device dataclasses' defaults."""
    (bus,) = load_config(config(tmp_path, "  profile = 'watlow_pm'\n")).buses
    expected = defaults(Bus, {"timeout_s", "retries", "pause_s", "host"})
    assert {name: getattr(bus, name) for name in expected} == expected
    (device,) = bus.devices
    expected = defaults(Device, {"instance", "max_gap", "timeout_s", "retries", "pause_s"})
    assert {name: getattr(device, name) for name in expected} == expected

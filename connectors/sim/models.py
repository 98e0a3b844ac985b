"""How simulated controllers' values move: a Watlow PM heats toward its set point with a
first-order lag and noise; a Servomex analyser reads about 20.9 % O2 with noise; a digital I/O
module's relay 3 (and its ``running`` input) is on for the first half of every second. The models
work in degC; :func:`setting_registers` gives the registers in which a controller says how it
is read (a PM's word order and display units), as its settings make them."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from connectors.registers import Profile

__all__ = ["MODELS", "SETTINGS", "device_values", "fahrenheit", "setting_registers"]


Model = Callable[[float, int, random.Random, float], dict[str, float | str]]


def _watlow_pm(elapsed: float, unit: int, rng: random.Random, sp: float) -> dict[str, float | str]:
    ambient = 22.0
    pv = sp + (ambient - sp) * math.exp(-elapsed / 30.0) + rng.gauss(0.0, 0.05)
    heat = min(100.0, max(0.0, (sp - pv) * 8.0))
    return {
        "analog_input_value": round(pv, 3),
        "input_error": 61,  # Watlow's enumeration for "none"
        "analog_input_2": round(ambient + rng.gauss(0.0, 0.05), 3),
        "set_point": sp,
        "closed_loop_set_point": sp,
        "heat_power": round(heat, 2),
        "cool_power": 0.0,
        "display_units": 15,  # Celsius (the device's units setting decides what is served)
    }


def _servomex_4100(
    elapsed: float, unit: int, rng: random.Random, sp: float
) -> dict[str, float | str]:
    o2 = 20.9 + rng.gauss(0.0, 0.02)
    co2 = 0.04 + rng.gauss(0.0, 0.002)
    values: dict[str, float | str] = {
        "measurement_1": round(o2, 4),
        "measurement_1_name": "O2",
        "measurement_1_units": "%",
        "measurement_2": round(co2, 5),
        "measurement_2_name": "CO2",
        "measurement_2_units": "%",
        "measurement_3": round(max(0.0, 2.0 + rng.gauss(0.0, 0.3)), 3),
        "measurement_3_name": "CO",
        "measurement_3_units": "ppm",
        "measurement_4": 0.0,
        "measurement_4_name": "",
        "measurement_4_units": "",
        "derived_1": round(100.0 - o2 / 0.2095, 3),
        "derived_1_name": "O2 def",  # oxygen deficiency
        "derived_1_units": "%",
        "ma_input_1": round(12.0 + rng.gauss(0.0, 0.01), 4),
        "ma_input_2": 4.0,
    }
    return values


def _digital_io(elapsed: float, unit: int, rng: random.Random, sp: float) -> dict[str, float | str]:
    cycling = 1 if elapsed % 1.0 < 0.5 else 0  # a duty cycle of one half
    return {
        "relay_1": 1,
        "relay_2": 0,
        "relay_3": cycling,
        "relay_4": unit % 2,
        "door": 1,  # closed
        "running": cycling,
        "overtemperature": 0,
        "fault": 0,
    }


MODELS: dict[str, Model] = {
    "watlow_pm": _watlow_pm,
    "servomex_4100": _servomex_4100,
    "digital_io": _digital_io,
}


def device_values(
    profile: Profile, elapsed: float, unit: int, rng: random.Random, set_point: float | None = None
) -> dict[str, int | float | str]:
    """Every parameter's simulated engineering value, ``elapsed`` s after start.

    Parameters a profile's model does not know read 0 (or an empty string).
    """
    model = MODELS.get(profile.name)
    sp = set_point if set_point is not None else 70.0 + 5.0 * unit
    known = model(elapsed, unit, rng, sp) if model else {}
    return {
        p.name: known.get(p.name, "" if p.codec.type == "string" else 0) for p in profile.parameters
    }


def fahrenheit(celsius: float) -> float:
    """``celsius`` in degF, rounded to what a controller shows (3 decimals)."""
    return round(celsius * 9.0 / 5.0 + 32.0, 3)


# Watlow's "Communications - Modbus Word Order" (17043) is a wide enumeration, served as a
# 32-bit value in the controller's own order: Low_High (1331) [1331, 0], High_Low (1330)
# [0, 1330]. "Communications - Display Units" (17050): 15 = C, 30 = F.
_PM_WORD_ORDER = {"low_high": [1331, 0], "high_low": [0, 1330]}
_PM_UNITS = {"C": 15, "F": 30}


def _watlow_pm_settings(word_order: str, units: str) -> dict[int, int]:
    low, high = _PM_WORD_ORDER[word_order]
    return {2488: low, 2489: high, 2490: _PM_UNITS[units]}


# Profile name -> (its holding registers that say how it is read, their words for a device's
# word order ("low_high", "high_low") and units ("C", "F")).
SETTINGS: dict[str, tuple[tuple[int, ...], Callable[[str, str], dict[int, int]]]] = {
    "watlow_pm": ((2488, 2489, 2490), _watlow_pm_settings),
}


def setting_registers(profile: str, word_order: str, units: str) -> dict[int, int]:
    """Holding register -> word, of the registers in which a controller of ``profile`` says
    how it is read, set to ``word_order`` and ``units`` (none for a profile without)."""
    known = SETTINGS.get(profile)
    return known[1](word_order, units) if known else {}

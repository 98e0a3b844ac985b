"""How simulated controllers' values move: a Watlow PM heats toward its set point with a
first-order lag and noise; a Servomex analyser reads about 20.9 % O2 with noise."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from connectors.registers import Profile

__all__ = ["MODELS", "device_values"]


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
        "display_units": 15,  # Celsius
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
        "ma_input_1": round(12.0 + rng.gauss(0.0, 0.01), 4),
        "ma_input_2": 4.0,
    }
    return values


MODELS: dict[str, Model] = {"watlow_pm": _watlow_pm, "servomex_4100": _servomex_4100}


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

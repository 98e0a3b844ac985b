"""A Watlow EZ-ZONE PM's holding registers, laid out from the vendor's facts, not the project's
code: PDU addresses, types and enumeration codes from Watlow's PM parameter table (as shipped
in the watlowlib 0.8.1 wheel, extract in data/watlow_pm_parameters.json), float32 words
packed here with :mod:`struct`.

Word order (parameter 17043 "Communications - Modbus Word Order", a "Wide Enumeration" at
2488): a PM in Low_High (1331, Watlow's default) sends its 32-bit values low word first and
serves 2488-2489 as [1331, 0]; one in High_Low (1330) sends them high word first and serves
[0, 1330]. A PM that serves 17043 as one 16-bit register has the code at 2488 and anything
at 2489. Display units (17050 at 2490): 15 = °C, 30 = °F; temperatures are in that unit.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

ADDRESSES = {  # parameter name (snake_case of Watlow's) -> PDU address, instance 1 unless named
    "analog_input_value": 360,  # 4001, IEEE Float
    "input_error": 362,  # 4002, Enumeration
    "analog_input_2": 440,  # 4001 instance 2 (next instance offset 80)
    "heat_power": 1904,  # 8011, IEEE Float, %
    "cool_power": 1906,  # 8014, IEEE Float, %
    "set_point": 2160,  # 7001, IEEE Float
    "closed_loop_set_point": 2172,  # 7007, IEEE Float
    "display_units": 2490,  # 17050, Enumeration
}
WORD_ORDER_ADDRESS = 2488  # 17043, Wide Enumeration
HIGH_LOW, LOW_HIGH = 1330, 1331
CELSIUS, FAHRENHEIT = 15, 30
UNITS = {CELSIUS: "degC", FAHRENHEIT: "degF"}
ORDERS = {LOW_HIGH: "Low_High", HIGH_LOW: "High_Low"}
TEMPERATURES = ("analog_input_value", "analog_input_2", "set_point", "closed_loop_set_point")
POWERS = ("heat_power", "cool_power")
FLOATS = TEMPERATURES + POWERS
ENUMS = ("input_error", "display_units")
NONE_ERROR = 61  # input error "None"
FILLER = 0x0101  # what a PM serving 17043 as one register has at 2489 here

# Values in range for Watlow's table (-1128..5537 °C, -1999..9999 °F, power 0..100 %), none
# of them 0 (which reads alike in either word order), each with at most 6 significant digits
# (so float32 keeps them exactly as written).
VALUES = {
    CELSIUS: {
        "analog_input_value": 234.567,
        "analog_input_2": 21.875,
        "set_point": 240.0,
        "closed_loop_set_point": 239.5,
        "heat_power": 37.25,
        "cool_power": 3.5,
    },
    FAHRENHEIT: {
        "analog_input_value": 454.221,
        "analog_input_2": 71.375,
        "set_point": 464.0,
        "closed_loop_set_point": 463.1,
        "heat_power": 62.5,
        "cool_power": 1.25,
    },
}


def float_words(value: float, word_order: int) -> tuple[int, int]:
    """``value`` as IEEE 754 single precision in two registers, in the PM's word order."""
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return (low, high) if word_order == LOW_HIGH else (high, low)


def words_float(words: tuple[int, int] | list[int], word_order: int) -> float:
    """The float32 in two registers read from a PM in ``word_order``."""
    first, second = words
    high, low = (second, first) if word_order == LOW_HIGH else (first, second)
    return struct.unpack(">f", struct.pack(">HH", high, low))[0]


def float32(value: float) -> float:
    """``value`` rounded to single precision (what two registers can hold)."""
    return struct.unpack(">f", struct.pack(">f", value))[0]


@dataclass(frozen=True)
class PM:
    """One PM's state: word order, display units, single-register 17043 or not, values."""

    word_order: int = LOW_HIGH
    units: int = FAHRENHEIT
    single_register: bool = False
    offset: float = 0.0  # added to every temperature, to tell PMs on one bus apart
    values: Mapping[str, float] = field(default_factory=dict)

    def value(self, name: str) -> float:
        """The value ``name`` holds (as loaded: exactly representable in float32)."""
        if name in self.values:
            return self.values[name]
        value = VALUES[self.units][name] + (self.offset if name in TEMPERATURES else 0.0)
        assert float(f"{float32(value):.7g}") == value, f"{value} is not a float32 as written"
        return value

    @property
    def unit(self) -> str:
        return UNITS[self.units]

    def registers(self) -> dict[int, int]:
        """PDU address -> register word, for every register this PM serves."""
        words: dict[int, int] = {}
        for name in FLOATS:
            address = ADDRESSES[name]
            words[address], words[address + 1] = float_words(self.value(name), self.word_order)
        words[ADDRESSES["input_error"]] = NONE_ERROR
        words[ADDRESSES["display_units"]] = self.units
        if self.single_register:
            pair = (self.word_order, FILLER)
        else:
            pair = (self.word_order, 0) if self.word_order == LOW_HIGH else (0, self.word_order)
        words[WORD_ORDER_ADDRESS], words[WORD_ORDER_ADDRESS + 1] = pair
        return words

    def expected(self) -> dict[str, tuple[float, str | None, str | None]]:
        """parameter -> (value, unit, value_text) the flow must store for this PM."""
        out: dict[str, tuple[float, str | None, str | None]] = {}
        for name in TEMPERATURES:
            out[name] = (self.value(name), self.unit, None)
        for name in POWERS:
            out[name] = (self.value(name), "%", None)
        out["input_error"] = (float(NONE_ERROR), None, "none")
        out["display_units"] = (float(self.units), None, "C" if self.units == CELSIUS else "F")
        return out

    def __str__(self) -> str:
        form = "one register" if self.single_register else "two registers"
        return f"{ORDERS[self.word_order]} ({form}), {self.unit}"

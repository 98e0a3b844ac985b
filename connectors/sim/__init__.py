"""Simulated controllers served by real pymodbus servers.

:class:`BusSimulator` (server.py) serves the devices of one bus; each is a
:class:`SimulatedDevice` (device.py) whose values move by a model (models.py); an RTU
bus runs over a simulated RS-485 cable between two pseudo-terminals (cable.py). The
production path reaches this package only for a bus configured ``simulate = true``, through
connectors.link, which builds its simulator with :func:`simulator_for`.
``python -m connectors.sim`` serves a bus on its own.
"""

from connectors.sim.device import SimulatedDevice
from connectors.sim.server import BusSimulator, simulator_for

__all__ = ["BusSimulator", "SimulatedDevice", "simulator_for"]

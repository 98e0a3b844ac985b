"""``python -m connectors.sim``: serve simulated controllers for any Modbus client."""

from connectors.sim.cli import main

main()

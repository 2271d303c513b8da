"""The Binance compatible exchange simulator of one market (USDⓈ-M, COIN-M or spot): websocket streams, REST, faults,
accounting and replay.

Use ``running_simulator(SimulatorConfig(...))`` in-process or ``harvest simulate`` as a separate process; see
docs/simulator.md.
"""

from harvest_pipeline.simulator.config import SimulatorConfig
from harvest_pipeline.simulator.faults import FaultError
from harvest_pipeline.simulator.listings import ListingError
from harvest_pipeline.simulator.server import Simulator, running_simulator

__all__ = ["FaultError", "ListingError", "SimulatorConfig", "Simulator", "running_simulator"]

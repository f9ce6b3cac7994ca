"""A stateful Stripe emulator that the official `stripe` SDK talks to over HTTP.

See README.md in this package for what is emulated, what is not, and the control API.
"""

from .app import create_app
from .client import EmulatorControl, EmulatorControlError
from .config import EmulatorConfig, WebhookConfig
from .core import Emulator
from .faults import FaultSettings
from .server import EmulatorServer, run

__all__ = [
    "Emulator",
    "EmulatorConfig",
    "EmulatorControl",
    "EmulatorControlError",
    "EmulatorServer",
    "FaultSettings",
    "WebhookConfig",
    "create_app",
    "run",
]

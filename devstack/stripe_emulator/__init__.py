"""A stateful Stripe emulator that the official `stripe` SDK talks to over HTTP.

See README.md in this package; what each endpoint does is in its module, the control API and what
is not emulated in BEHAVIOUR.md.
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

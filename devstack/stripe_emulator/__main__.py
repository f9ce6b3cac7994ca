"""`python -m stripe_emulator --host 127.0.0.1 --port 12111 ...`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import EmulatorConfig
from .server import DEFAULT_HOST, DEFAULT_PORT, run


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; every option has a default suitable for development."""
    parser = argparse.ArgumentParser(
        prog="python -m stripe_emulator",
        description="Run the Meterline Stripe emulator.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (loopback)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--state-file", type=Path, default=None, help="persist state here")
    parser.add_argument("--seed", type=int, default=0, help="seed for fault injection")
    parser.add_argument(
        "--meter-processing-delay",
        type=float,
        default=0.0,
        help="seconds before summaries reflect a meter event",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Validate the configuration and serve in the foreground."""
    args = parse_args(argv)
    config = EmulatorConfig(
        seed=args.seed,
        state_file=args.state_file,
        meter_processing_delay=args.meter_processing_delay,
    )
    problems = config.validate()
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    run(config, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())

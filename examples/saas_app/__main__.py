"""`python -m examples.saas_app`: serve the example app (settings: settings.py)."""

from __future__ import annotations

import sys

import uvicorn

from .app import create_app
from .settings import Settings


def main() -> None:
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        sys.exit(f"examples.saas_app: {exc}")
    print(f"example app on {settings.public_url}", flush=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    main()

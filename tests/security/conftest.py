"""The security suite reuses the entitlements API fixture: a real server on real services."""

from tests.entitlements.conftest import api, api_env

__all__ = ["api", "api_env"]

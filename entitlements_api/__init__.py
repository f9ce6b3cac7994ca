"""The entitlements API service; see README.md."""

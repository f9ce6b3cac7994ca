"""The view's Postgres side: rebuilding it exactly from the rollups, and comparing the two."""

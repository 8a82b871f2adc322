"""Scenarios: reading what to build (scenario.toml) and fetching its sources."""

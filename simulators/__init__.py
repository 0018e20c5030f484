"""Deterministic simulated fleets of vehicles and chargers with labelled fault injection."""

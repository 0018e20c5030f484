"""Over-the-air updates: campaign model, rollout engine and agents (see issue 4)."""

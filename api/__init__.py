"""FastAPI service for owner-experience staff."""

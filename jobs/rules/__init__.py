"""Rules checked before a call is placed (see each module)."""

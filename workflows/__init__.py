"""The desired-state file, resource kinds and their providers, and the planner."""

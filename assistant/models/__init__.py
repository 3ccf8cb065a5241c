"""The model library (which models the user has, which serves each task) and the active adapters."""

"""Training jobs as the GUI process sees them: prepared, started, followed and resumed as separate processes."""

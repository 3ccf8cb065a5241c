"""The project's benchmarks: each module is a script run on its own (``make bench`` runs them all).

A regular package, so that ``benchmarks.record`` and the rest resolve to this folder even where
an installed distribution also ships a top-level ``benchmarks`` package (pysbd does).
"""

"""Local inference: model library, the engine worker process and its client, tasks.

Qt-free and torch-free. Only :mod:`engine.worker` (a child process) ever hands a model file
to llama.cpp.
"""

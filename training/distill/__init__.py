"""Knowledge distillation: a teacher model teaches a smaller student on the user's documents.

``config.py`` holds the settings, ``trainer.py`` the losses and the resumable loop, ``job.py``
the ``"distill"`` job kind of ``python -m training.run``. Students made by dropping layers of
the teacher come from :mod:`training.prune`.
"""

"""Knowledge distillation: a teacher model teaches a smaller student on the user's documents.

``config.py`` holds the settings, ``trainer.py`` the losses and the resumable loop, ``job.py``
the ``"distill"`` job kind of ``python -m training.run``. The student, installed or cut out of
the teacher by :mod:`training.prune`, is :mod:`training.student`'s business.
"""

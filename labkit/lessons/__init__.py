"""The lessons: one module per notebook, named after it, and the instruments they use.

A lesson's module holds the claims its check cells verify and the exercise it asks. Keeping them
here rather than in the notebooks lets the tests run a lesson's checks against a runtime with
the lesson's step removed, and see them fail. The instruments: ``checks.py`` (claims and
exercises), ``samples.py`` (the C samples), ``supervisor.py`` and ``terminal.py`` (running them
with a timeout, replaying a terminal session), ``sandbox.py`` (a fake systemd host) and
``merged_view.py`` (lesson 05's overlay helper).
"""

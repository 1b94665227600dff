"""One module per lesson: the claims its check cells verify and the exercise it asks.

Keeping them here rather than in the notebooks lets the tests run a lesson's checks against a
runtime with the lesson's step removed, and see them fail.
"""

"""The two errors servopt raises for bad input; both are ``ValueError`` so callers can catch either."""

from __future__ import annotations


class InvalidInstanceError(ValueError):
    """An instance (or an instance file) breaks a rule of its decision.

    The message names the field and the rule, in the user's terms.
    """


class InfeasibleError(ValueError):
    """A well-formed instance admits no feasible decision; the message says why in domain terms."""

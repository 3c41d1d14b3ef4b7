"""Solves and policies: ``exact`` (HiGHS through Pyomo or CVXPY) and one module per decision
with its bid-price rule and the deployed baselines (``POLICIES``)."""

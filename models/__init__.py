"""Declarative formulations, one module per decision (Pyomo; CVXPY for the LPs).

Models build; they never solve.
"""

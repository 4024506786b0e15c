"""searchrun: dynamic pipelines on Kubernetes, one Job per step, with budgets."""

__version__ = "0.1.0"

"""The kube executor: the kopf operator that runs each step as a Job."""

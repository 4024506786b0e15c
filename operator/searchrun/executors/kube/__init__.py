"""The kube executor: the kopf operator that runs each step as a Job."""

from .slim_kubernetes import install as _slim_kubernetes

_slim_kubernetes()  # before anything here imports the Kubernetes client: only the modules it uses (~30 MiB less)

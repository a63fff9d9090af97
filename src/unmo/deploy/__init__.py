"""Deployment tooling: the HPA rule and the autoscaling simulator (docs/deploy.md)."""

"""An example trainer package for the HPO service (see docs/trainers.md)."""

"""Python client of the HPO service's HTTP API."""

from client.http_client import HPOClient, HPOError, TrialGone

__all__ = ["HPOClient", "HPOError", "TrialGone"]

"""The project repositories the orchestrator creates on GitHub and the files it commits.

A domain package: it imports only the base layer (config, logging, errors). The PyGithub
implementation lives in `project_orchestrator.repos.pygithub`, not imported here, so that
importing the interface does not load PyGithub.
"""

from project_orchestrator.repos.host import (
    HostedRepository,
    RepositoryError,
    RepositoryHost,
    RepositoryRateLimited,
    repository_name,
)

__all__ = [
    "HostedRepository",
    "RepositoryError",
    "RepositoryHost",
    "RepositoryRateLimited",
    "repository_name",
]

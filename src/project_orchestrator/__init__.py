"""Project Orchestrator: build software by chatting, with a human at every gate."""

__version__ = "0.1.0"
SERVICE_NAME = "project-orchestrator"

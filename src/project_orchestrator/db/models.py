"""Every model, imported so that Base.metadata is complete (Alembic, drift check)."""

from __future__ import annotations

from project_orchestrator.agent.models import (
    AgentTurn,
    ComponentStatus,
    ConversationMessage,
    ConversationSummary,
)
from project_orchestrator.channels.models import OutboundMessage
from project_orchestrator.db.base import Base
from project_orchestrator.db.leases import WorkLease
from project_orchestrator.events.models import InboundEvent
from project_orchestrator.projects.models import (
    AiUsage,
    BudgetRequest,
    Identity,
    IdentityLinkCode,
    Project,
    ProjectMember,
    TelegramChat,
)
from project_orchestrator.scar.models import ScarCommand
from project_orchestrator.vision.models import BrainstormNote, VisionDocument
from project_orchestrator.workflow.models import (
    ApprovalGate,
    WorkflowPhase,
    WorkflowRun,
)

metadata = Base.metadata

__all__ = [
    "AgentTurn",
    "AiUsage",
    "ApprovalGate",
    "Base",
    "BrainstormNote",
    "BudgetRequest",
    "ComponentStatus",
    "ConversationMessage",
    "ConversationSummary",
    "Identity",
    "IdentityLinkCode",
    "InboundEvent",
    "OutboundMessage",
    "Project",
    "ProjectMember",
    "ScarCommand",
    "TelegramChat",
    "VisionDocument",
    "WorkLease",
    "WorkflowPhase",
    "WorkflowRun",
    "metadata",
]

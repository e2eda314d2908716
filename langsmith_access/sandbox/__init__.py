"""A LangSmith-compatible sandbox server with generated organizations and injectable faults."""

from langsmith_access.sandbox.faults import FaultConfig
from langsmith_access.sandbox.generator import generate_org
from langsmith_access.sandbox.org_state import OrgState
from langsmith_access.sandbox.server import SandboxServer

__all__ = ["FaultConfig", "OrgState", "SandboxServer", "generate_org"]

"""langsmith-access: who can do what in a LangSmith organization, and safe workspace-role changes."""

__version__ = "0.1.0"

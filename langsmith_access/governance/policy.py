"""The access policy: a YAML file (``LANGSMITH_ACCESS_POLICY``) read into a ``Policy``.

The format (DESIGN.md section 10; every key optional)::

    approval:
      required: ["Admin"]          # roles whose grants need approval; "*" = every role
      workspaces: ["Production"]   # if given, approval is needed only in these workspaces
      approvers: workspace_admins  # workspace_admins | org_admins | a list of emails
      self_approval: false         # may the requester or the grantee approve?
      wait_at_most: 72h            # awaiting longer than this: approval_expired (null: no limit)
    duration:
      default: null                # e.g. 30d; null = no expiry unless asked (or the role's max)
      max: {"Admin": 8h, "*": 90d} # longest allowed per role; "*" for any other role

Reading happens in two steps, each refusing with the file, the line and the reason of every
problem it finds (``PolicyError``):

1. ``load_policy(path)`` reads the file: it must exist, parse as YAML, use only the keys above,
   and give valid durations (see ``durations.py``). PyYAML's node tree keeps each value's line.
2. ``PolicyFile.resolve(roles, workspaces)`` turns the role and workspace names into ids, against
   the latest sync's tables (``store.directory``): an unknown, ambiguous or organization role, or
   an unknown or ambiguous workspace, is refused.

``governing_policy(path, conn)`` does both. Without a policy file (``path`` None) nothing needs
approval and nothing expires unless asked (``NO_POLICY``).
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import duckdb
import yaml

from langsmith_access.governance.durations import DurationError, parse_duration
from langsmith_access.settings import ORGS_FILE_VARIABLE, yaml_line
from langsmith_access.store import directory
from langsmith_access.store.directory import RoleEntry, WorkspaceEntry
from langsmith_access.store.queries import as_uuid, typed_name

POLICY_VARIABLE = "LANGSMITH_ACCESS_POLICY"
# Where an org's policy file is named: its own `policy` in the orgs file, else the variable.
# (This module sees only the path, not which of the two named it: messages say both.)
NAMED_BY = f"the org's `policy` in the orgs file ({ORGS_FILE_VARIABLE}), else {POLICY_VARIABLE}"
ANY_ROLE = "*"
WORKSPACE_ADMINS = "workspace_admins"
ORG_ADMINS = "org_admins"
NAMED_EMAILS = "emails"
DEFAULT_WAIT_AT_MOST = timedelta(hours=72)

# Every key the format knows, by section.
SECTIONS = {
    "approval": ("required", "workspaces", "approvers", "self_approval", "wait_at_most"),
    "duration": ("default", "max"),
}

_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"


class PolicyError(ValueError):
    """The policy file cannot be used. Lists every problem found, each with its line."""

    fix = f"correct the policy file at the lines named (or stop naming it, to govern nothing: {NAMED_BY})"

    def __init__(self, path: Path | str, problems: list[tuple[int | None, str]]):
        self.path = str(path)
        # In file order (a stable sort: several problems on one line keep their order).
        self.problems = sorted(problems, key=lambda problem: problem[0] or 0)
        lines = "\n".join(
            f"  line {line}: {reason}" if line is not None else f"  {reason}" for line, reason in self.problems
        )
        super().__init__(f"the access policy {self.path} is refused:\n{lines}")


@dataclass(frozen=True)
class Named:
    """A role, workspace or email as the file writes it, and its line (1-based)."""

    text: str
    line: int


@dataclass(frozen=True)
class PolicyFile:
    """The policy as written: names not yet checked against the latest sync."""

    path: Path
    required: tuple[Named, ...] = ()
    workspaces: tuple[Named, ...] | None = None
    approvers: str = WORKSPACE_ADMINS  # or ORG_ADMINS, or NAMED_EMAILS (then approver_emails)
    approver_emails: tuple[Named, ...] = ()
    self_approval: bool = False
    wait_at_most: timedelta | None = DEFAULT_WAIT_AT_MOST
    default_duration: timedelta | None = None
    max_durations: tuple[tuple[Named, timedelta], ...] = ()

    def resolve(self, roles: Iterable[RoleEntry], workspaces: Iterable[WorkspaceEntry]) -> Policy:
        """The policy with ids for names, or ``PolicyError`` listing every name it cannot place."""
        roles, workspaces = list(roles), list(workspaces)
        problems: list[tuple[int | None, str]] = []

        def role_id(named: Named, where: str) -> str | None:
            found, reason = _match_role(named.text, roles)
            if reason:
                problems.append((named.line, f"{where}: {reason}"))
            return found

        required_ids: set[str] = set()
        for named in self.required:
            if named.text != ANY_ROLE and (found := role_id(named, "approval.required")):
                required_ids.add(found)
        workspace_ids: set[str] | None = None
        if self.workspaces is not None:
            workspace_ids = set()
            for named in self.workspaces:
                found, reason = _match_workspace(named.text, workspaces)
                if reason:
                    problems.append((named.line, f"approval.workspaces: {reason}"))
                elif found:
                    workspace_ids.add(found)
        max_by_role: dict[str, timedelta] = {}
        max_from: dict[str, Named] = {}  # the entry each role's max came from
        max_any: timedelta | None = None
        for named, longest in self.max_durations:
            if named.text == ANY_ROLE:
                max_any = longest
            elif found := role_id(named, "duration.max"):
                if found in max_from:
                    # Two names of one role ("Admin" and WORKSPACE_ADMIN): which max holds is a guess.
                    first = max_from[found]
                    problems.append((named.line, f"duration.max: {named.text!r} is the role {first.text!r} "
                                                 f"names (line {first.line}): give each role one max"))
                    continue
                max_from[found] = named
                max_by_role[found] = longest
        if problems:
            raise PolicyError(self.path, problems)
        return Policy(
            source=str(self.path),
            approval_any_role=any(n.text == ANY_ROLE for n in self.required),
            approval_role_ids=frozenset(required_ids),
            approval_workspace_ids=frozenset(workspace_ids) if workspace_ids is not None else None,
            approvers=self.approvers,
            approver_emails=tuple(n.text for n in self.approver_emails),
            self_approval=self.self_approval,
            wait_at_most=self.wait_at_most,
            default_duration=self.default_duration,
            max_by_role=tuple(sorted(max_by_role.items())),
            max_any_role=max_any,
        )


@dataclass(frozen=True)
class Policy:
    """The policy in force, names resolved to ids. ``NO_POLICY`` when no file is set."""

    source: str | None = None  # the file's path; None: no policy file
    approval_any_role: bool = False
    approval_role_ids: frozenset[str] = frozenset()
    approval_workspace_ids: frozenset[str] | None = None  # None: every workspace
    approvers: str = WORKSPACE_ADMINS
    approver_emails: tuple[str, ...] = ()
    self_approval: bool = False
    wait_at_most: timedelta | None = DEFAULT_WAIT_AT_MOST
    default_duration: timedelta | None = None
    max_by_role: tuple[tuple[str, timedelta], ...] = field(default=())  # (role_id, longest)
    max_any_role: timedelta | None = None

    def max_duration(self, role_id: str) -> timedelta | None:
        """The longest access the policy allows for ``role_id`` (None: only the ceiling)."""
        return dict(self.max_by_role).get(role_id, self.max_any_role)


NO_POLICY = Policy()


def governing_policy(path: Path | None, conn: duckdb.DuckDBPyConnection) -> Policy:
    """The policy in force: ``NO_POLICY`` without a file, else the file read and its names
    checked against the latest sync (``PolicyError`` if anything is wrong)."""
    if path is None:
        return NO_POLICY
    # Every problem in one refusal: the names of what did parse are checked too.
    written, problems = _read_policy(path)
    if not directory.is_synced(conn):
        raise PolicyError(path, [*problems, (None, "there is no synced data to check its roles and "
                                                   "workspaces against: run `langsmith-access sync` first")])
    try:
        policy = written.resolve(directory.synced_roles(conn), directory.synced_workspaces(conn))
    except PolicyError as unplaced:
        problems += unplaced.problems
    if problems:
        raise PolicyError(path, problems)
    return policy


# ------------------------------------------------------------------ reading the file


def load_policy(path: Path | str) -> PolicyFile:
    """Read and check the file's YAML, keys and durations (names are checked by ``resolve``)."""
    written, problems = _read_policy(path)
    if problems:
        raise PolicyError(written.path, problems)
    return written


def _read_policy(path: Path | str) -> tuple[PolicyFile, list[tuple[int | None, str]]]:
    """The policy as far as it could be read, and the problems found on the way. A file that
    cannot be read, or is not YAML, raises ``PolicyError`` (nothing of it could be read)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(path, [(None, "the file does not exist: create it, or correct the path that "
                                        f"names it ({NAMED_BY})")]) from None
    except IsADirectoryError:
        raise PolicyError(path, [(None, "it is a directory, not a file: name the policy's YAML file in it "
                                        f"({NAMED_BY})")]) from None
    except UnicodeDecodeError as error:
        raise PolicyError(path, [(None, f"the file is not UTF-8 text ({error.reason} at byte {error.start}): "
                                        "save it as UTF-8")]) from None
    except OSError as error:  # a permission, a device: why, not a word about its encoding
        raise PolicyError(path, [(None, f"the file cannot be read ({error.strerror or error}): "
                                        "let this user read it, or name another file")]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        context = getattr(error, "context", None)
        reason = f"not valid YAML: {problem}" + (f" ({context})" if context else "")
        raise PolicyError(path, [(yaml_line(mark, text) if mark else None, reason)]) from None
    reader = _Reader(path)
    written = reader.policy(root)
    return written, reader.problems


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Reader:
    """Walks the node tree, collecting every problem with its line."""

    def __init__(self, path: Path):
        self.path = path
        self.problems: list[tuple[int | None, str]] = []

    def problem(self, node: yaml.Node, reason: str) -> None:
        self.problems.append((_line(node), reason))

    def policy(self, root: yaml.Node | None) -> PolicyFile:
        values: dict = {}
        if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == _NULL):
            return PolicyFile(self.path)  # an empty file: nothing governed
        sections = self.mapping(root, "the policy", tuple(SECTIONS))
        if "approval" in sections:
            values.update(self.approval(sections["approval"]))
        if "duration" in sections:
            values.update(self.duration(sections["duration"]))
        return PolicyFile(self.path, **values)

    def mapping(self, node: yaml.Node, where: str, known: tuple[str, ...]) -> dict[str, yaml.Node]:
        """A mapping's values by key; unknown and repeated keys are problems. A null is empty."""
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, f"{where} must be a mapping of {', '.join(known)}")
            return {}
        found: dict[str, yaml.Node] = {}
        lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key_node.tag == _MERGE:
                # The node tree is read as written: a merge would be dropped, not applied.
                self.problem(key_node, f"a YAML merge key (<<) in {where} is not read: write its keys out in full "
                                       f"(the keys here are {', '.join(known)})")
            elif key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.problem(key_node, f"unknown key {key!r} in {where}{hint}: the keys here are {', '.join(known)}")
            elif key in found:
                self.problem(key_node, f"{where}.{key} is given twice (first on line {lines[key]})"
                             if where != "the policy" else f"{key} is given twice (first on line {lines[key]})")
            else:
                found[key] = value_node
                lines[key] = _line(key_node)
        return found

    def names(self, node: yaml.Node, where: str, what: str) -> tuple[Named, ...]:
        """A list of non-empty names (a single name is a list of one)."""
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return ()
        names = []
        for item in items:
            if not isinstance(item, yaml.ScalarNode) or item.tag in (_NULL, _BOOL) or not item.value.strip():
                self.problem(item, f"{where} must list {what} as text, got {_shown(item)}{_quote_hint(item)}")
                continue
            names.append(Named(typed_name(item.value), _line(item)))  # NFC, as a request's names are
        return tuple(names)

    def duration_value(self, node: yaml.Node, where: str, *, nullable: bool) -> timedelta | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            if nullable:
                return None
            self.problem(node, f"{where} must be a duration like 8h or 90d, not null")
            return None
        if not isinstance(node, yaml.ScalarNode):
            self.problem(node, f"{where} must be a duration like 8h or 90d, got {_shown(node)}")
            return None
        try:
            return parse_duration(node.value, where)
        except DurationError as error:
            self.problem(node, str(error))
            return None

    def approval(self, node: yaml.Node) -> dict:
        keys = self.mapping(node, "approval", SECTIONS["approval"])
        values: dict = {}
        if "required" in keys:
            values["required"] = self.names(keys["required"], "approval.required", 'roles (or "*")')
        if "workspaces" in keys:
            values["workspaces"] = self.names(keys["workspaces"], "approval.workspaces", "workspaces")
            if not values["workspaces"]:
                # An empty list would need approval nowhere: say so rather than guess.
                self.problem(keys["workspaces"], "approval.workspaces lists no workspace: list the workspaces whose "
                                                 "grants need approval, or remove the key for every workspace")
            elif "required" not in keys or _empty(keys["required"]):
                # Approval is for the roles `required` names: with none, the workspaces listed would
                # need approval for no grant at all, the opposite of what the key reads as.
                self.problem(keys["workspaces"], "approval.workspaces lists where grants need approval, but "
                                                 "approval.required names no role, so no grant there would: list the "
                                                 'roles in approval.required ("*" for every role), or remove '
                                                 "approval.workspaces")
        if "approvers" in keys:
            values.update(self.approvers(keys["approvers"]))
        if "self_approval" in keys:
            flag = keys["self_approval"]
            if isinstance(flag, yaml.ScalarNode) and flag.tag == _BOOL:
                values["self_approval"] = flag.value.lower() in ("true", "yes", "on", "y")
            else:
                self.problem(flag, f"approval.self_approval must be true or false, got {_shown(flag)}")
        if "wait_at_most" in keys:
            values["wait_at_most"] = self.duration_value(keys["wait_at_most"], "approval.wait_at_most", nullable=True)
        return values

    def approvers(self, node: yaml.Node) -> dict:
        if isinstance(node, yaml.ScalarNode) and node.value in (WORKSPACE_ADMINS, ORG_ADMINS):
            return {"approvers": node.value}
        if isinstance(node, yaml.SequenceNode):
            emails = self.names(node, "approval.approvers", "emails")
            for named in emails:
                if "@" not in named.text or any(ch.isspace() for ch in named.text):
                    self.problems.append((named.line, f"approval.approvers: {named.text!r} is not an email"))
            if not node.value:
                self.problem(node, "approval.approvers is an empty list: nobody could approve")
            # One person, however often and in whatever case the file names them (emails compare
            # without case): named once in every refusal and notification, in the first spelling.
            once: dict[str, Named] = {}
            for named in emails:
                once.setdefault(named.text.casefold(), named)
            return {"approvers": NAMED_EMAILS, "approver_emails": tuple(once.values())}
        hint = ""
        if isinstance(node, yaml.ScalarNode) and "@" in node.value:
            hint = f": one approver is a list of one, [{node.value}]"
        elif isinstance(node, yaml.ScalarNode) and node.value.strip().lower() == NAMED_EMAILS:
            hint = ": list the approvers' emails themselves, e.g. [security@example.com, ops@example.com]"
        self.problem(node, f"approval.approvers must be {WORKSPACE_ADMINS}, {ORG_ADMINS} or a list of "
                           f"emails, got {_shown(node)}{hint}")
        return {}

    def duration(self, node: yaml.Node) -> dict:
        keys = self.mapping(node, "duration", SECTIONS["duration"])
        values: dict = {}
        if "default" in keys:
            values["default_duration"] = self.duration_value(keys["default"], "duration.default", nullable=True)
        if "max" in keys:
            limits = keys["max"]
            if isinstance(limits, yaml.ScalarNode) and limits.tag == _NULL:
                return values
            if not isinstance(limits, yaml.MappingNode):
                self.problem(limits, f'duration.max must map roles (or "*") to durations, got {_shown(limits)}')
                return values
            seen: dict[str, int] = {}
            pairs = []
            for key_node, value_node in limits.value:
                role = typed_name(key_node.value) if isinstance(key_node, yaml.ScalarNode) else ""
                if key_node.tag == _MERGE:
                    self.problem(key_node, "a YAML merge key (<<) in duration.max is not read: write its roles out "
                                           "in full")
                    continue
                if not role or key_node.tag in (_NULL, _BOOL):
                    self.problem(key_node, f"duration.max keys must be role names (or \"*\"), got "
                                           f"{_shown(key_node)}{_quote_hint(key_node)}")
                    continue
                if role in seen:
                    self.problem(key_node, f"duration.max gives {role!r} twice (first on line {seen[role]})")
                    continue
                seen[role] = _line(key_node)
                longest = self.duration_value(value_node, f"duration.max[{role!r}]", nullable=False)
                if longest is not None:
                    pairs.append((Named(role, _line(key_node)), longest))
            values["max_durations"] = tuple(pairs)
        return values


def _quote_hint(node: yaml.Node) -> str:
    """How to write a name YAML reads as a boolean (a role named Yes, No, On or Off): quoted."""
    if not isinstance(node, yaml.ScalarNode) or node.tag != _BOOL:
        return ""
    return f", which YAML reads as true or false: if it is a name, quote it (\"{node.value}\")"


def _empty(node: yaml.Node) -> bool:
    """A value that lists nothing: null, or an empty list."""
    return (isinstance(node, yaml.ScalarNode) and node.tag == _NULL) or (
        isinstance(node, yaml.SequenceNode) and not node.value)


def _shown(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return "null" if node.tag == _NULL else repr(node.value)
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


# ------------------------------------------------------------------ names against the sync


def _listing(names: Iterable[str], limit: int = 12) -> str:
    names = list(names)
    more = f", and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _synced(name: str) -> str:
    """A name as the sync stored it, in NFC: LangSmith may send it decomposed (e + U+0301) where
    the policy's author typed it composed (\u00e9), as a request's names are matched (``nfc_normalize``)."""
    return unicodedata.normalize("NFC", name)


def _match_role(text: str, roles: list[RoleEntry]) -> tuple[str | None, str | None]:
    """(role id, None) or (None, why not): the same rule as a request's ``--role`` (an id, a
    name such as WORKSPACE_ADMIN, or a display name such as Admin, in any case)."""
    text = typed_name(text)
    as_id = as_uuid(text)
    if as_id is not None:
        matches = [r for r in roles if r.role_id == as_id]
    else:
        matches = [
            r for r in roles
            if (r.name.upper() == text.upper() and r.name != "CUSTOM")
            or _synced(r.display_name).lower() == text.lower()
        ]
    workspace_roles = [r for r in matches if r.access_scope == "workspace"]
    available = _listing(r.display_name for r in roles if r.access_scope == "workspace")
    if not matches:
        return None, f"unknown role {text!r}: the latest sync has no such role (workspace roles: {available})"
    if not workspace_roles:
        return None, (f"{matches[0].display_name!r} is an organization role; grants here are of workspace "
                      f"roles (workspace roles: {available})")
    if len(workspace_roles) > 1:
        ids = ", ".join(f"{r.display_name} ({r.role_id})" for r in workspace_roles)
        return None, f"ambiguous role {text!r}: {len(workspace_roles)} workspace roles match ({ids}); give its id"
    return workspace_roles[0].role_id, None


def _match_workspace(text: str, workspaces: list[WorkspaceEntry]) -> tuple[str | None, str | None]:
    """(workspace id, None) or (None, why not): an id, or a display name (exact, then in any case)."""
    text = typed_name(text)
    as_id = as_uuid(text)
    if as_id is not None:
        matches = [w for w in workspaces if w.workspace_id == as_id]
    else:
        matches = [w for w in workspaces if _synced(w.display_name) == text] or [
            w for w in workspaces if _synced(w.display_name).lower() == text.lower()
        ]
    if len(matches) == 1:
        return matches[0].workspace_id, None
    if matches:
        ids = ", ".join(w.workspace_id for w in matches)
        return None, f"ambiguous workspace {text!r}: {len(matches)} workspaces have that name ({ids}); give its id"
    available = _listing(w.display_name for w in workspaces)
    if text == ANY_ROLE:  # "*" is for roles: every workspace is what leaving the key out says
        return None, ('"*" names no workspace: to need approval in every workspace, remove approval.workspaces '
                      f"(workspaces: {available})")
    return None, (f"unknown workspace {text!r}: the latest sync has no shared workspace by that name or id "
                  f"(workspaces: {available})")

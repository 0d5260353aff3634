"""SCAR's database and workspace, and its built-in commands, for `tests.support.fake_scar`.

What lives here survives a SCAR restart: workspace folders (path -> text), codebases with
their commands, conversation links and AI sessions. Every method runs under `self._lock`.
"""

from __future__ import annotations

import posixpath
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from tests.support import fake_scar_texts as texts
from tests.support.fake_scar_texts import NO_REPOSITORIES, WORKSPACE

Layout = Literal["claude", "template", "none"]


class PullRequestHost(Protocol):
    """Where SCAR's `gh` pushes and merges: the fake GitHub, when a test connects one."""

    def open_or_push(self, full_name: str, branch: str) -> int: ...
    def merge_pull(self, full_name: str, number: int) -> bool: ...


_COMMAND_FOLDERS = (".claude/commands", ".agents/commands")


def slugify(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words[:6]) or "feature"


def _parse_int(text: str) -> int | None:
    """JavaScript's parseInt(text, 10): leading digits count ("2abc" is 2)."""
    found = re.match(r"\s*([+-]?\d+)", text)
    return int(found.group(1)) if found else None


def _folder_of(url: str) -> str:
    """SCAR's folder for a clone URL: the last segment, minus the FIRST ".git" anywhere."""
    return url.rstrip("/").split("/")[-1].replace(".git", "", 1)


def _full_name_of(url: str) -> str:
    parts = re.sub(r"\.git$", "", url.rstrip("/")).split("/")
    return "/".join(parts[-2:])


@dataclass
class _Remote:
    layout: Layout = "claude"
    files: dict[str, str] = field(default_factory=dict)


@dataclass
class _Codebase:
    id: int
    name: str
    url: str | None
    cwd: str
    commands: dict[str, str] = field(default_factory=dict)  # name -> path in the cwd


@dataclass
class _Session:
    id: int
    uuid: str
    last_command: str | None = None
    done: list[str] = field(default_factory=list)


@dataclass
class _Conversation:
    codebase_id: int | None = None
    cwd: str | None = None
    session: int | None = None  # the active session


class ScarState:
    """SCAR's persistent state and built-ins; `FakeScar` adds the HTTP side and AI runs."""

    def __init__(
        self,
        *,
        default_owner: str,
        web_url: str,
        files_source: Callable[[str], dict[str, str]] | None,
    ) -> None:
        self.default_owner = default_owner
        self.web_url = web_url.rstrip("/")
        self.files_source = files_source
        self.workspace_missing = False
        self.unclonable: set[str] = set()  # full names or folder names whose clone fails
        self.next_pr_number = 1
        # Connected: builds push to GitHub and open (or update) the branch's pull request,
        # and merge-pr merges it there. Otherwise the numbers are SCAR's own count.
        self.pull_requests: PullRequestHost | None = None
        self._lock = threading.RLock()
        self._folders: dict[str, dict[str, str]] = {}  # workspace folder -> path -> text
        self._remotes: dict[str, _Remote] = {}  # lower-case full name -> upstream
        self._codebases: list[_Codebase] = []
        self._sessions: dict[int, _Session] = {}
        self._conversations: dict[str, _Conversation] = {}

    # --- setting the scene and looking at it ---------------------------------------------

    def remote(
        self, full_name: str, *, layout: Layout = "claude", files: dict[str, str] | None = None
    ) -> None:
        """How `full_name` looks upstream when SCAR clones (or pulls) it. "claude": the
        DEFAULT_COMMANDS in .claude/commands (also any repository never declared);
        "template": SCAR's project template (plan-feature-github and execute-github only in
        .agents/commands); "none": no command files. `files`: what else it holds."""
        with self._lock:
            self._remotes[full_name.lower()] = _Remote(layout, dict(files or {}))

    def add_repo(self, full_name: str, *, layout: Layout | None = None) -> str:
        """`full_name` was cloned earlier: its folder, codebase and auto-loaded commands.
        `layout` None keeps the declared remote's (else "claude"). Returns the folder."""
        url = f"{self.web_url}/{full_name}"
        with self._lock:
            remote = self._remotes.setdefault(full_name.lower(), _Remote())
            remote.layout = layout or remote.layout
            folder = _folder_of(url)
            if folder in self._folders:
                raise ValueError(f"{folder} is already in the workspace")
            self._folders[folder] = self._upstream(full_name)
            codebase = self._new_codebase(folder, url)
            self._autoload(codebase, folder)
            return folder

    def add_commands(self, folder_or_full_name: str, names: Sequence[str]) -> None:
        """Register commands on a codebase directly (like /command-set), with their files."""
        with self._lock:
            folder = self._folder_named(folder_or_full_name)
            codebase = self._codebase_at(f"{WORKSPACE}/{folder}")
            if codebase is None:
                raise KeyError(f"no codebase for {folder_or_full_name}")
            for name in names:
                path = f".claude/commands/{name}.md"
                self._folders[folder].setdefault(path, f"# {name}\n\n$ARGUMENTS\n")
                codebase.commands[name] = path

    @property
    def workspace(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._folders)

    def workspace_files(self, folder: str) -> dict[str, str]:
        with self._lock:
            return dict(self._folders[folder])

    def commands_of(self, folder_or_full_name: str) -> set[str]:
        with self._lock:
            folder = self._folder_named(folder_or_full_name)
            codebase = self._codebase_at(f"{WORKSPACE}/{folder}")
            return set(codebase.commands) if codebase else set()

    def codebase(self, conversation_id: str) -> str | None:
        with self._lock:
            found = self._linked(self._conversations.get(conversation_id, _Conversation()))
            return found.name if found else None

    def session(self, conversation_id: str) -> int | None:
        """The conversation's active session (None: the next AI command starts one)."""
        with self._lock:
            return self._conversations.get(conversation_id, _Conversation()).session

    def _command_file(self, cid: str, name: str) -> tuple[_Codebase | None, str | None, str, bool]:
        """/command-invoke's look-up: codebase, command path, its file, whether it reads."""
        conversation = self._conversation(cid)
        codebase = self._linked(conversation)
        path = codebase.commands.get(name) if codebase else None
        cwd = conversation.cwd or (codebase.cwd if codebase else WORKSPACE)
        full = posixpath.normpath(posixpath.join(cwd, path or ""))
        return codebase, path, full, path is not None and self._read(full) is not None

    # --- AI results and sessions ---------------------------------------------------------

    def _result(
        self,
        result: str | Callable[[str], str] | None,
        name: str,
        args: list[str],
        args_text: str,
        codebase: _Codebase | None,
    ) -> str:
        if callable(result):
            return result(args_text)
        if result is not None:
            return result
        if codebase is None:
            repo = f"{self.default_owner}/project"
        elif codebase.url:
            repo = _full_name_of(codebase.url)
        else:
            repo = f"{self.default_owner}/{codebase.name}"
        return self.default_result(name, args, repo)

    def default_result(self, name: str, args: Sequence[str], repo: str) -> str:
        """What SCAR plausibly answers (shaped like its template commands' reports)."""
        if name == "prime":
            return (
                f"## Project Overview\n\nPrimed on {repo}: a small web service with a README, "
                "a test suite and CI. Ready to plan features."
            )
        if name == "plan-feature-github":
            feature = " ".join(args) or "feature"
            slug = slugify(feature)
            return (
                f"## 📋 Implementation Plan Created\n\n**Feature Branch:** `feature-{slug}`\n"
                f"**Plan Location:** `.agents/plans/{slug}.md`\n\n### Summary\n{feature}.\n\n"
                "### Next Steps\nTo implement this plan, use:\n```bash\n@scar /command-invoke "
                f"execute-github .agents/plans/{slug}.md feature-{slug}\n```"
            )
        if name == "execute-github":
            plan = args[0] if args else ".agents/plans/feature.md"
            found = re.search(r"([^/\s]+)\.md$", plan)
            branch = args[1] if len(args) > 1 else f"feature-{found.group(1) if found else 'x'}"
            if self.pull_requests is not None:
                number = self.pull_requests.open_or_push(repo, branch)
            else:
                with self._lock:
                    number = self.next_pr_number
                    self.next_pr_number += 1
            return (
                f"## ✅ Implementation Complete\n\n**Feature Branch:** `{branch}`\n"
                f"**Implementation Plan:** `{plan}`\n"
                f"**Pull Request:** {self.web_url}/{repo}/pull/{number}\n\n"
                "### Summary\nImplemented the plan: 4 files changed, 3 tests added."
            )
        if name == "validate":
            return "All checks passed ✅"
        if name == "merge-pr":
            merged = args[0].lstrip("#") if args else str(max(1, self.next_pr_number - 1))
            hosted = self.pull_requests
            if hosted is not None and not hosted.merge_pull(repo, int(merged)):
                return texts.merge_refused(int(merged))
            return texts.merged(int(merged))
        return f"Done: {name} {' '.join(args)}".strip()

    def _session_for(self, conversation: _Conversation, name: str) -> _Session:
        session = self._sessions.get(conversation.session) if conversation.session else None
        after_plan = {"execute": "plan-feature", "execute-github": "plan-feature-github"}
        if session is None or session.last_command == after_plan.get(name, "-"):
            session = _Session(len(self._sessions) + 1, str(uuid.uuid4()))
            self._sessions[session.id] = session
            conversation.session = session.id
        return session

    # --- built-ins (command-handler.ts), called under the lock ----------------------------

    def _builtin(self, cid: str, command: str, args: list[str]) -> str:
        conversation = self._conversation(cid)
        codebase = self._linked(conversation)
        if command == "help":
            return texts.HELP
        if command == "status":
            session = self._sessions.get(conversation.session or 0)
            url = codebase.url if codebase else None
            name = codebase.name if codebase else None
            return texts.status_answer(
                name, url, conversation.cwd, session.uuid if session else None
            )
        if command == "getcwd":
            return f"Current working directory: {conversation.cwd or 'Not set'}"
        if command == "clone":
            return self._clone(conversation, args)
        if command in ("repos", "repo"):
            if self.workspace_missing:
                error = "ENOENT: no such file or directory, scandir '/workspace'"
                return (
                    f"Failed to list repositories: {error}"
                    if command == "repos"
                    else f"Failed: {error}"
                )
            if command == "repos":
                active = codebase.cwd.rsplit("/", 1)[-1] if codebase else None
                return texts.repos_answer(sorted(self._folders), active)
            return self._repo(conversation, args)
        if command in ("reset", "reset-context"):
            if conversation.session is None:
                return "No active session to reset."
            conversation.session = None
            if command == "reset":
                return (
                    "Session cleared. Starting fresh on next message.\n\n"
                    "Codebase configuration preserved."
                )
            return (
                "AI context reset. Your next message will start a fresh conversation while "
                "keeping your current working directory."
            )
        if command == "load-commands":
            return self._load_commands(conversation, codebase, args)
        if command == "commands":
            return (
                "No codebase configured."
                if codebase is None
                else texts.commands_answer(codebase.commands)
            )
        if command in ("templates", "template-list"):
            return texts.templates_answer()
        raise NotImplementedError(f"the fake SCAR has no /{command}")

    def _clone(self, conversation: _Conversation, args: list[str]) -> str:
        if not args or not args[0]:
            return "Usage: /clone <repo-url>"
        url = re.sub(r"/+$", "", args[0])
        if url.startswith("git@github.com:"):
            url = url.replace("git@github.com:", "https://github.com/", 1)
        folder = url.split("/")[-1].replace(".git", "", 1)
        path = f"{WORKSPACE}/{folder}"
        full_name = _full_name_of(url)
        if self.workspace_missing:
            return f"Failed to clone repository: ENOENT: no such file or directory, mkdir '{path}'"
        if folder in self._folders:
            bare = re.sub(r"\.git$", "", url)
            found = [c for c in self._codebases if c.url in (bare, bare + ".git")]
            if not found:
                return texts.directory_exists_answer(path)
            self._link(conversation, found[0])
            present = [f for f in _COMMAND_FOLDERS if self._is_dir(f"{path}/{f}")]
            return texts.already_cloned_answer(found[0].name, path, next(iter(present), None))
        blocked = {name.lower() for name in self.unclonable}
        if full_name.lower() in blocked or folder.lower() in blocked:
            return texts.clone_failed_answer(url, path)
        self._folders[folder] = self._upstream(full_name)
        codebase = self._new_codebase(folder, url)
        self._link(conversation, codebase)
        return texts.cloned_answer(folder, path, self._autoload(codebase, folder))

    def _repo(self, conversation: _Conversation, args: list[str]) -> str:
        if not args:
            return "Usage: /repo <number|name> [pull]"
        identifier = args[0]
        pull = len(args) > 1 and args[1].lower() == "pull"
        folders = sorted(self._folders)
        if not folders:
            return NO_REPOSITORIES
        number = _parse_int(identifier)
        if number is not None and 1 <= number <= len(folders):
            target: str | None = folders[number - 1]
        else:
            named = [f for f in folders if f == identifier]
            target = next(iter(named or [f for f in folders if f.startswith(identifier)]), None)
        if target is None:
            return (
                f"Repository not found: {identifier}\n\nUse /repos to see available repositories."
            )
        path = f"{WORKSPACE}/{target}"
        codebase = self._codebase_at(path) or self._new_codebase(target, None)
        if pull and codebase.url:
            self._folders[target] = self._upstream(_full_name_of(codebase.url))
        self._link(conversation, codebase)
        return texts.repo_answer(target, pulled=pull, loaded=self._autoload(codebase, target))

    def _load_commands(
        self, conversation: _Conversation, codebase: _Codebase | None, args: list[str]
    ) -> str:
        if not args:
            return "Usage: /load-commands <folder>"
        if codebase is None:
            return "No codebase configured."
        folder_path = " ".join(args)
        full = posixpath.normpath(posixpath.join(conversation.cwd or WORKSPACE, folder_path))
        if full != WORKSPACE and not full.startswith(WORKSPACE + "/"):
            return f"Path must be within {WORKSPACE} directory"
        try:
            found = self._markdown_files(full)
        except FileNotFoundError:
            return f"Failed: ENOENT: no such file or directory, scandir '{full}'"
        except NotADirectoryError:
            return f"Failed: ENOTDIR: not a directory, scandir '{full}'"
        if not found:
            return f"No .md files found in {folder_path} (searched recursively)"
        for name, relative in found:
            codebase.commands[name] = posixpath.normpath(posixpath.join(folder_path, relative))
        names = ", ".join(name for name, _ in found)
        return f"Loaded {len(found)} commands recursively: {names}"

    # --- the database and the file system ------------------------------------------------

    def _conversation(self, cid: str) -> _Conversation:
        return self._conversations.setdefault(cid, _Conversation())

    def _linked(self, conversation: _Conversation) -> _Codebase | None:
        found = [c for c in self._codebases if c.id == conversation.codebase_id]
        return found[0] if found else None

    def _link(self, conversation: _Conversation, codebase: _Codebase) -> None:
        conversation.codebase_id, conversation.cwd = codebase.id, codebase.cwd
        conversation.session = None  # SCAR deactivates the session when switching

    def _new_codebase(self, folder: str, url: str | None) -> _Codebase:
        codebase = _Codebase(len(self._codebases) + 1, folder, url, f"{WORKSPACE}/{folder}")
        self._codebases.append(codebase)
        return codebase

    def _codebase_at(self, cwd: str) -> _Codebase | None:
        found = [c for c in self._codebases if c.cwd == cwd]
        return found[-1] if found else None  # ORDER BY created_at DESC

    def _folder_named(self, folder_or_full_name: str) -> str:
        if folder_or_full_name in self._folders:
            return folder_or_full_name
        return _folder_of(f"{self.web_url}/{folder_or_full_name}")

    def _upstream(self, full_name: str) -> dict[str, str]:
        remote = self._remotes.get(full_name.lower(), _Remote())
        files = texts.layout_files(remote.layout, texts.DEFAULT_COMMANDS) | remote.files
        if self.files_source is not None:
            files |= self.files_source(full_name)
        return files

    def _autoload(self, codebase: _Codebase, folder: str) -> int:
        for sub in _COMMAND_FOLDERS:
            try:
                found = self._markdown_files(f"{WORKSPACE}/{folder}/{sub}")
            except OSError:
                continue
            if found:
                for name, relative in found:
                    codebase.commands[name] = f"{sub}/{relative}"
                return len(found)  # files, not distinct names: SCAR counts duplicates too
        return 0

    def _files(self) -> dict[str, str]:
        if self.workspace_missing:
            return {}
        return {
            f"{WORKSPACE}/{d}/{p}": t
            for d, files in self._folders.items()
            for p, t in files.items()
        }

    def _read(self, path: str) -> str | None:
        return self._files().get(path)

    def _is_dir(self, path: str) -> bool:
        if self.workspace_missing:
            return False
        top = path[len(WORKSPACE) + 1 :].split("/", 1)[0]
        if path == WORKSPACE or (path == f"{WORKSPACE}/{top}" and top in self._folders):
            return True
        return any(p.startswith(path + "/") for p in self._files())

    def _markdown_files(self, directory: str) -> list[tuple[str, str]]:
        """findMarkdownFilesRecursive: (name, path below `directory`), in readdir order,
        skipping hidden entries and node_modules."""
        if self._read(directory) is not None:
            raise NotADirectoryError(directory)
        if not self._is_dir(directory):
            raise FileNotFoundError(directory)
        below = [
            p[len(directory) + 1 :].split("/")
            for p in self._files()
            if p.startswith(directory + "/")
        ]
        kept = [
            parts
            for parts in below
            if parts[-1].endswith(".md")
            and not any(s.startswith(".") or s == "node_modules" for s in parts)
        ]
        return [(parts[-1][:-3], "/".join(parts)) for parts in sorted(kept)]

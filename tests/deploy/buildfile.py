"""Read the Dockerfile and .dockerignore the way Docker does, for tests that cannot run Docker.

No Docker engine runs on the test machines, so the tests do what an image build would:
filter the build context through ``.dockerignore`` (moby's patternmatcher rules: patterns
in order, the last match wins, a pattern also matches every path under a directory it
matches), then run the builder stage's ENV/WORKDIR/COPY/RUN steps with the image's
filesystem root mapped to a temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@dataclass
class Instruction:
    keyword: str          # upper case: FROM, RUN, COPY ...
    args: str             # the rest of the (joined) line
    line: int             # 1-based line number of its first line

    def flags(self) -> tuple[dict[str, str], str]:
        """Leading ``--name=value`` options (RUN --mount, COPY --from ...) and the remainder."""
        opts: dict[str, str] = {}
        rest = self.args
        while rest.startswith("--"):
            word, _, rest = rest.partition(" ")
            name, _, value = word[2:].partition("=")
            opts[name] = value
            rest = rest.lstrip()
        return opts, rest

    def exec_form(self) -> list[str]:
        """The JSON (exec) form of CMD, ENTRYPOINT or HEALTHCHECK ... CMD."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            _opts, text = self.flags()
            assert text.startswith("CMD "), f"line {self.line}: HEALTHCHECK without CMD: {text[:40]!r}"
            text = text[4:]
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"line {self.line}: {text[:60]!r}"
        return value


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.image}: no {keyword}"
        return found[-1]


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"Dockerfile: no stage named {name!r}")


def expand(text: str, env: dict[str, str]) -> str:
    """``$VAR`` and ``${VAR}`` as Dockerfile ENV/ARG substitution does (unset: empty)."""
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)


def parse_dockerfile(path: Path) -> Dockerfile:
    logical: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and (not stripped or stripped.startswith("#")):
            continue  # Docker drops comment and empty lines inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        text = " ".join(p for p in pending if p)
        pending = []
        keyword, _, args = text.partition(" ")
        logical.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, f"{path}: ends inside a continued instruction"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in logical:
        if ins.keyword == "ARG" and not stages:
            name, _, default = ins.args.partition("=")
            global_args[name] = default
        elif ins.keyword == "FROM":
            words = ins.args.split()
            image = expand(words[0], global_args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image, name))
        else:
            assert stages, f"line {ins.line}: {ins.keyword} before FROM"
            stages[-1].instructions.append(ins)
    return Dockerfile(global_args, stages)


def env_assignments(ins: Instruction, env: dict[str, str]) -> list[tuple[str, str]]:
    """The ``KEY=VALUE ...`` pairs of an ENV instruction, values expanded against ``env``."""
    assert "'" not in ins.args, f"line {ins.line}: single-quoted ENV values are not supported here"
    out = []
    for word in shlex.split(ins.args):
        key, eq, value = word.partition("=")
        assert eq, f"line {ins.line}: ENV {word!r}: use the KEY=VALUE form"
        out.append((key, expand(value, env)))
    return out


# ------------------------------------------------------------------ .dockerignore
@dataclass
class _Pattern:
    regex: re.Pattern[str]
    exclusion: bool
    text: str


def _compile(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match syntax plus ``**`` (any number of directories), anchored."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.index("]", i)
            out.append("[" + pattern[i + 1:end].replace("!", "^", 1) + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "$")


class DockerIgnore:
    """moby/patternmatcher's MatchesOrParentMatches over a .dockerignore file."""

    def __init__(self, text: str) -> None:
        self.patterns: list[_Pattern] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            body = os.path.normpath(line[1:].strip() if exclusion else line).lstrip("/")
            self.patterns.append(_Pattern(_compile(body), exclusion, body))

    def excluded(self, rel: str) -> bool:
        parts = rel.split("/")
        parents = ["/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
        matched = False
        for p in self.patterns:
            if p.exclusion != matched:
                continue  # an inclusion can only undo a match, an exclusion only make one
            if p.regex.match(rel) or any(p.regex.match(d) for d in parents):
                matched = not p.exclusion
        return matched

    def may_include_under(self, rel_dir: str) -> bool:
        """Could an exception pattern re-include something under this excluded directory?"""
        for p in self.patterns:
            if not p.exclusion:
                continue
            literal = re.split(r"[*?\[]", p.text, maxsplit=1)[0]
            if literal.startswith(rel_dir + "/") or (rel_dir + "/").startswith(literal) or literal == "":
                return True
        return False

    def context_files(self, root: Path) -> list[str]:
        """Every file of the build context, relative to root, as Docker would send it."""
        out = []
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            rel_dir = "" if rel_dir == "." else rel_dir
            keep = []
            for d in dirnames:
                rel = f"{rel_dir}/{d}" if rel_dir else d
                if not self.excluded(rel) or self.may_include_under(rel):
                    keep.append(d)
            dirnames[:] = sorted(keep)
            for f in sorted(filenames):
                rel = f"{rel_dir}/{f}" if rel_dir else f
                if not self.excluded(rel):
                    out.append(rel)
        return out


def copy_context(root: Path, dest: Path) -> list[str]:
    """Copy the build context of ``root`` (filtered by its .dockerignore) to ``dest``."""
    ignore = DockerIgnore((root / ".dockerignore").read_text(encoding="utf-8"))
    files = ignore.context_files(root)
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    return files

"""Reads the Dockerfile and works out, without a Docker daemon, which files an image gets.

Docker cannot run on the machines that run these tests, so the tests cannot build an image
and look inside. What an image holds from the repository is decided by two files, though:
`.dockerignore` decides the build context, and the Dockerfile's COPY instructions decide
which of those files reach which stage. This module follows both for one set of build
arguments, the way a builder that only runs the stages the target needs (BuildKit) does:
the target stage, the stages it is built FROM, and the stages it COPYs --from. RUN steps
are not modelled: what pip installs comes from the files COPYed before it.

.dockerignore patterns are matched by the Docker SDK for Python (a port of Docker's own
matcher), not by gitignore rules, which differ: `dist` in a .dockerignore is the root's
`dist` only, while in a .gitignore it is every `dist` folder.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from docker.utils.build import exclude_paths

_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def flags_and_words(self) -> tuple[dict[str, str], list[str]]:
        """`--from=build a b` -> ({"from": "build"}, ["a", "b"]); the exec (JSON) form is not used by COPY here."""
        flags: dict[str, str] = {}
        words = []
        for word in shlex.split(self.arguments):
            if word.startswith("--") and not words:
                name, _, value = word[2:].partition("=")
                flags[name] = value
            else:
                words.append(word)
        return flags, words


def instructions(path: Path) -> list[Instruction]:
    """Instructions in order, continuation lines joined, comments and the parser directive dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append(Instruction(keyword.upper(), rest.strip()))
    return found


def substitute(text: str, variables: dict[str, str]) -> str:
    """Dockerfile variable substitution (${NAME} and $NAME); an unset variable is empty, as in Docker."""
    return _VARIABLE.sub(lambda m: variables.get(m.group(1) or m.group(2), ""), text)


@dataclass
class Stage:
    """One FROM block: its base (an image or an earlier stage) and its instructions."""

    name: str
    base: str
    steps: list[Instruction] = field(default_factory=list)


@dataclass
class Image:
    """What one build produces: its files from the context, its ENV, the instructions of its
    stage chain (variables substituted), and every stage the build ran with the context files
    they read (a build stage's files are not in the image, but what it installs comes from them)."""

    files: dict[str, str]  # image path -> path in the build context
    env: dict[str, str]
    steps: list[Instruction]
    workdir: PurePosixPath
    stages_built: set[str]
    context_read: set[str]

    def last(self, keyword: str) -> str | None:
        found = [step.arguments for step in self.steps if step.keyword == keyword]
        return found[-1] if found else None


class Dockerfile:
    """A Dockerfile with its build context (the folder holding it and its .dockerignore)."""

    def __init__(self, path: Path, context: Path) -> None:
        self.path = path
        self.context = context
        self.steps = instructions(path)

    def context_files(self) -> set[str]:
        """Every regular file of the build context, relative to it, after .dockerignore."""
        ignore = self.context / ".dockerignore"
        patterns = []
        if ignore.is_file():
            for line in ignore.read_text().splitlines():
                if line.strip() and not line.strip().startswith("#"):
                    patterns.append(line.strip())
        kept = exclude_paths(str(self.context), patterns, dockerfile=self.path.name)
        return {path for path in kept if (self.context / path).is_file()}

    def stages(self, build_args: dict[str, str]) -> tuple[list[Stage], dict[str, str]]:
        """The stages, FROM lines resolved with the global ARGs, and those ARGs' values."""
        global_args: dict[str, str] = {}
        stages: list[Stage] = []
        for step in self.steps:
            if step.keyword == "ARG" and not stages:
                name, _, default = step.arguments.partition("=")
                global_args[name] = build_args.get(name, default)
            elif step.keyword == "FROM":
                words = substitute(step.arguments, global_args).split()
                base = words[0]
                name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
                stages.append(Stage(name=name, base=base))
            elif stages:
                stages[-1].steps.append(step)
        return stages, global_args

    def image(self, build_args: dict[str, str]) -> Image:
        """What building the last stage with these arguments copies from the context, and its config."""
        stages, global_args = self.stages(build_args)
        by_name = {stage.name: stage for stage in stages}
        context = {path: path for path in self.context_files()}
        built: set[str] = set()
        read: set[str] = set()

        def build(stage: Stage) -> Image:
            built.add(stage.name)
            if stage.base in by_name:
                base = build(by_name[stage.base])
                files, env, steps, workdir = dict(base.files), dict(base.env), list(base.steps), base.workdir
            else:
                files, env, steps, workdir = {}, {}, [], PurePosixPath("/")
            variables = dict(env)
            for step in stage.steps:
                arguments = substitute(step.arguments, variables)
                steps.append(Instruction(step.keyword, arguments))
                if step.keyword == "ARG":
                    name, _, default = arguments.partition("=")
                    variables[name] = build_args.get(name, default or global_args.get(name, ""))
                elif step.keyword == "ENV":
                    for pair in shlex.split(arguments):
                        name, _, value = pair.partition("=")
                        env[name] = variables[name] = value
                elif step.keyword == "WORKDIR":
                    workdir = workdir / arguments
                elif step.keyword == "COPY":
                    flags, words = Instruction("COPY", arguments).flags_and_words()
                    *sources, destination = words
                    if "from" in flags:
                        given = build(by_name[flags["from"]]).files
                        available = {path.lstrip("/"): origin for path, origin in given.items()}
                    else:
                        available = context
                    copied = copy(available, sources, workdir / destination, destination.endswith("/"))
                    files.update(copied)
                    read.update(copied.values())
            return Image(files, env, steps, workdir, stages_built=built, context_read=read)

        return build(stages[-1])


def copy(
    available: dict[str, str], sources: list[str], destination: PurePosixPath, into: bool
) -> dict[str, str]:
    """COPY semantics: a directory's contents go into the destination; a file goes to it (or into it).

    `available` maps paths relative to the source's root (the context or a stage) to their origin.
    """
    copied: dict[str, str] = {}
    for source in sources:
        assert not any(c in source for c in "*?["), f"wildcards are not modelled: {source}"
        prefix = source.strip("/").removeprefix("./")
        if prefix in available and not prefix.endswith("/"):  # a file
            target = destination / PurePosixPath(prefix).name if into or len(sources) > 1 else destination
            copied[str(target)] = available[prefix]
            continue
        for path, origin in available.items():
            if prefix in ("", ".") or path.startswith(prefix + "/"):
                inner = path if prefix in ("", ".") else path[len(prefix) + 1 :]
                copied[str(destination / inner)] = origin
    return copied

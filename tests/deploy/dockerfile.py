"""A parser for the Dockerfile subset this project uses (no Docker engine runs here).

Handles comments, line continuations, parser directives, JSON (exec) and shell forms,
and ``ENV`` in both ``KEY=value ...`` and legacy ``KEY value`` form. Anything it does
not understand is an error, so a test cannot pass on a misread file.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

KNOWN = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, or None for the shell form."""
        if not self.value.startswith("["):
            return None
        parsed = json.loads(self.value)
        if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
            raise ValueError(f"line {self.line}: {self.keyword} array must hold strings")
        return parsed


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            values.update(parse_env(instruction))
        return values


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage named {name!r}")


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with continuations joined and comments dropped, with their first line number."""
    lines: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        lines.append((start, " ".join(p for p in pending if p)))
        pending = []
    if pending:
        raise ValueError(f"line {start}: continuation runs past the end of the file")
    return lines


def parse(path: Path) -> Dockerfile:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical_lines(path.read_text()):
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        if keyword not in KNOWN:
            raise ValueError(f"line {number}: unknown instruction {keyword!r}")
        instruction = Instruction(keyword, value.strip(), number)
        if keyword == "FROM":
            stages.append(_stage(instruction, args))
        elif keyword == "ARG" and not stages:
            name, _, default = instruction.value.partition("=")
            args[name] = default
        elif not stages:
            raise ValueError(f"line {number}: {keyword} before the first FROM")
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(args, stages)


def _stage(instruction: Instruction, args: dict[str, str]) -> Stage:
    words = instruction.value.split()
    if len(words) not in (1, 3) or (len(words) == 3 and words[1].upper() != "AS"):
        raise ValueError(f"line {instruction.line}: cannot read FROM {instruction.value!r}")
    base = words[0]
    for name, value in args.items():
        base = base.replace("${" + name + "}", value).replace("$" + name, value)
    return Stage(base, words[2] if len(words) == 3 else None)


def parse_env(instruction: Instruction) -> dict[str, str]:
    words = shlex.split(instruction.value)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    values = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"line {instruction.line}: ENV word {word!r} has no '='")
        values[key] = value
    return values

"""Errors meant for people, not stack traces.

    psyassist data prepare broken.jsonl --out out/   # prints a DataError, exits 2

A `DataError` names the file, the line (1-based) or record index (0-based), the
field and what was expected, and says how to skip bad records.  The CLI turns
every `PsyassistError` into a one-paragraph message and exit code 2.
"""

from __future__ import annotations


class PsyassistError(Exception):
    """An error caused by the user's input or environment; shown without a traceback."""


class DataError(PsyassistError):
    """A record that does not fit the expected shape."""

    def __init__(
        self,
        file: str,
        expected: str,
        *,
        line: int | None = None,
        record: int | None = None,
        field: str | None = None,
        got: object = None,
        reason: str = "invalid",
        hint: str = "Use --skip-invalid to skip bad records and count them in the report.",
    ):
        self.file = str(file)
        self.line = line
        self.record = record
        self.field = field
        self.expected = expected
        self.got = got
        self.reason = reason  # short machine-readable key used for skip counts
        self.hint = hint
        super().__init__(self.message())

    def where(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts[0] += f":{self.line}"
        if self.record is not None:
            parts.append(f"record {self.record}")
        if self.field:
            parts.append(f"field '{self.field}'")
        return ", ".join(parts)

    def message(self) -> str:
        msg = f"{self.where()}: expected {self.expected}"
        if self.got is not None:
            shown = repr(self.got)
            if len(shown) > 80:
                shown = shown[:77] + "..."
            msg += f", got {shown}"
        msg += "."
        if self.hint:
            msg += f" {self.hint}"
        return msg


class MissingDependency(PsyassistError):
    """An optional package is needed for this feature."""

    def __init__(self, package: str, feature: str, extra: str | None = None):
        install = f"pip install 'psyassist[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{feature} needs the optional package '{package}': {install}")

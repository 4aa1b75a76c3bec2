"""The one error a spec can raise: located to its file, line and element, with the fix."""

from __future__ import annotations

from pathlib import Path

from flux_provider.error_taxonomy import ErrorClass, FluxError


class SpecError(FluxError):
    """A data-set spec that cannot be used, located to the file, line and element (a ``config`` error: terminal)."""

    def __init__(
        self,
        path: Path | str,
        message: str,
        *,
        line: int | None = None,
        element: str | None = None,
        fix: str | None = None,
        dataset: str | None = None,
    ):
        where = f"{path}:{line}" if line else str(path)
        text = f"{where}: " + (f"<{element}>: " if element else "") + message + (f". Fix: {fix}" if fix else "")
        super().__init__(text, error_class=ErrorClass.CONFIG, dataset=dataset, step="spec")
        self.path, self.line, self.element, self.fix, self.detail = str(path), line, element, fix, message

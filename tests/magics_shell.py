"""A real IPython shell for magics tests, as jupysql's tests use: history kept in
memory only, and run_cell re-raises what the cell raised."""
from __future__ import annotations

from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config


class TestingShell(InteractiveShell):
    __test__ = False  # not a pytest test class

    def run_cell(self, *args, **kwargs):
        result = super().run_cell(*args, **kwargs)
        result.raise_error()
        return result

    @classmethod
    def fresh(cls) -> "TestingShell":
        config = Config()
        config.HistoryAccessor.enabled = False  # no SQLite history file per shell
        shell = cls(config=config)
        shell.displayhook.flush = lambda: None  # IPython's gc.collect() there can hang at exit
        return shell

    def run_as_cells(self, *sources: str) -> None:
        """Run sources as notebook cells would, recorded in the input history."""
        for source in sources:
            self.run_cell(source, store_history=True)

    def record_as_cells(self, *sources: str) -> None:
        """Put sources in the input history as if they had run (without their side effects)."""
        for source in sources:
            self.history_manager.store_inputs(self.execution_count, source, source)
            self.execution_count += 1

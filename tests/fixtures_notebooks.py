"""Real .ipynb fixtures written with nbformat, and the RSI strategy they hold."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, Union

import pytest

REPO = Path(__file__).resolve().parent.parent
PRICES_CSV = REPO / "notebooks" / "data" / "GOOG-USD-1d.csv"
# Small notebooks with the shapes real research notebooks have (tests/export/notebooks/).
EXPORT_NOTEBOOKS = REPO / "tests" / "export" / "notebooks"


def _blankly_requirement() -> str:
    """What a model's requirements.txt says for blankly: the installed version, or no version
    where blankly is not installed (Python 3.12 and newer)."""
    from importlib import metadata

    try:
        return "blankly==" + metadata.version("blankly")
    except metadata.PackageNotFoundError:
        return "blankly"


BLANKLY_PIN = _blankly_requirement()

# The RSI strategy, split into notebook cells as a quant writes it.
RSI_IMPORTS = """#| blankly
import blankly
from blankly import StrategyState
"""

RSI_EXPLORE = """import pandas as pd
prices = pd.read_csv("GOOG-USD-1d.csv")
prices.tail()
"""

RSI_LOGIC = """#| blankly
def init(symbol, state: StrategyState):
    state.variables["history"] = state.interface.history(
        symbol, 50, resolution=state.resolution, return_as="deque"
    )["close"]
    state.variables["owns_position"] = False


def price_event(price, symbol, state: StrategyState):
    state.variables["history"].append(price)
    rsi = blankly.indicators.rsi(state.variables["history"])
    if rsi[-1] < 30 and not state.variables["owns_position"]:
        qty = blankly.trunc(state.interface.cash / price, 2)
        if qty > 0:
            state.interface.market_order(symbol, side="buy", size=qty)
            state.variables["owns_position"] = True
    elif rsi[-1] > 70 and state.variables["owns_position"]:
        qty = blankly.trunc(state.interface.account[state.base_asset].available, 2)
        if qty > 0:
            state.interface.market_order(symbol, side="sell", size=qty)
        state.variables["owns_position"] = False
"""

RSI_SETUP = """#| blankly
exchange = blankly.KeylessExchange(
    price_reader=blankly.data.PriceReader("./GOOG-USD-1d.csv", "GOOG-USD")
)
strategy = blankly.Strategy(exchange)
strategy.add_price_event(price_event, symbol="GOOG-USD", resolution="1d", init=init)
"""

# The body of the %%blankly_deploy cell: the script's entry point. Locally it
# backtests; deployed (blankly.is_deployed) it starts, and a hosted-style
# backtest runs it with the uploaded args.
RSI_ENTRY = """if blankly.is_deployed:
    strategy.start()
else:
    result = strategy.backtest(
        initial_values={"USD": 10000}, start_date="2010-06-01", end_date="2013-03-01"
    )
    print(result)
"""

RSI_BACKTEST_ARGS = {"initial_values": {"USD": 10000}, "start_date": "2010-06-01", "end_date": "2013-03-01"}

CellSpec = Union[str, dict[str, Any]]


def write_notebook(path: Path, cells: Sequence[CellSpec], *, metadata: dict | None = None) -> Path:
    """Write a real notebook. A cell is a code string, or a dict with keys
    source, and optionally cell_type ("code"/"markdown"/"raw"), tags, outputs."""
    import nbformat
    from nbformat import v4

    nb = v4.new_notebook()
    nb.metadata.update(
        metadata
        or {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        }
    )
    for spec in cells:
        if isinstance(spec, str):
            spec = {"source": spec}
        kind = spec.get("cell_type", "code")
        maker = {"code": v4.new_code_cell, "markdown": v4.new_markdown_cell, "raw": v4.new_raw_cell}[kind]
        cell = maker(spec["source"])
        if spec.get("tags"):
            cell.metadata["tags"] = list(spec["tags"])
        nb.cells.append(cell)
    nbformat.validate(nb)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def rsi_cells() -> list[CellSpec]:
    return [
        {"cell_type": "markdown", "source": "# RSI on GOOG\nBuy below 30, sell above 70."},
        RSI_IMPORTS,
        RSI_EXPLORE,
        RSI_LOGIC,
        RSI_SETUP,
    ]


@pytest.fixture
def prices_csv() -> Path:
    return PRICES_CSV


@pytest.fixture
def rsi_notebook(tmp_path: Path) -> Path:
    """A notebook with the RSI strategy in marked cells, beside its price CSV."""
    import shutil

    shutil.copy(PRICES_CSV, tmp_path / PRICES_CSV.name)
    return write_notebook(tmp_path / "rsi.ipynb", rsi_cells())


@pytest.fixture
def export_notebook(tmp_path: Path):
    """A copy of one of the export notebooks (``"local_module/research"``), in a folder of its own
    with the files beside it, so a build reads and writes nothing in the repository."""
    import shutil

    def copy(name: str) -> Path:
        source = EXPORT_NOTEBOOKS / f"{name}.ipynb"
        folder = tmp_path / "nb" / source.parent.relative_to(EXPORT_NOTEBOOKS)
        if source.parent == EXPORT_NOTEBOOKS:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, folder / source.name)
        else:
            shutil.copytree(source.parent, folder, dirs_exist_ok=True)
        return folder / source.name

    return copy

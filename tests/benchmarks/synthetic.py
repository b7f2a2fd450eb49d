"""Synthetic inputs for the benchmarks: a large research notebook, and price bars of any length.

The notebook (the export benchmark's) is written with nbformat. Every fourth cell
is markdown; the code cells cycle through what a quant's notebook holds: imports,
helper functions and classes that use earlier ones, exploration with magics
(``%time``, ``%%capture``, ``%matplotlib``), shell lines (``!pip install``,
``files = !ls``), a strategy in the middle. It builds without problems: every name
is defined by an earlier cell.

The prices (the sweep benchmark's) are a seeded random walk of daily bars, as many
as asked for, in the CSV form Blankly's ``PriceReader`` reads.
"""
from __future__ import annotations

from pathlib import Path

from tests.fixtures_notebooks import RSI_IMPORTS, RSI_LOGIC, RSI_SETUP, write_notebook

PRICES = "GOOG-USD-1d.csv"


def _ref(prefix: str, i: int, back: int) -> str:
    """The name an earlier cell defined (the first cells are special, so they use the base ones)."""
    return f"{prefix}_{i - back}" if i - back >= 10 else f"{prefix}_base"


def _code_cell(i: int) -> str:
    kind = i % 10
    if i == 0:
        return (
            "%matplotlib inline\nimport math\nimport json\nfrom collections import deque\n"
            "import numpy as np\nimport pandas as pd\n\n\n"
            "def feature_base(values, window=5):\n    return float(np.mean(values[-window:]))\n\n\n"
            "class Signal_base:\n    def __init__(self, history):\n        self.history = list(history)\n\n"
            "    def score(self):\n        return feature_base(self.history)\n\n\n"
            "value_base = 0.0\n"
        )
    if i == 1:
        return "!pip install ta==0.11.0\n%pip install --quiet tabulate\n"
    if i == 2:
        return RSI_IMPORTS.replace("#| blankly\n", "")
    if i == 3:
        return RSI_LOGIC.replace("#| blankly\n", "")
    if i == 4:
        return RSI_SETUP.replace("#| blankly\n", "").replace("./GOOG-USD-1d.csv", f"./{PRICES}")
    if kind == 0:
        return (
            f"def feature_{i}(values, window={5 + i % 20}):\n"
            f'    """Rolling mean minus a scaled root of the window (cell {i})."""\n'
            f"    series = pd.Series(values, dtype=float)\n"
            f"    mean = series.rolling(window, min_periods=1).mean()\n"
            f"    return float(mean.iloc[-1]) - math.sqrt(window) / {i + 1}\n"
        )
    if kind == 1:
        return (
            f"class Signal_{i}:\n"
            f"    threshold = {i % 7 + 1}\n\n"
            f"    def __init__(self, history):\n"
            f"        self.history = deque(history, maxlen=50)\n\n"
            f"    def score(self):\n"
            f"        return {_ref('feature', i, 1)}(list(self.history)) * self.threshold\n"
        )
    if kind == 2:
        return f"%time value_{i} = {_ref('feature', i, 2)}(np.linspace(0, 1, 200))\nvalue_{i}\n"
    if kind == 3:
        return (
            f"%%capture out_{i}\n"
            f"frame_{i} = pd.DataFrame({{'x': np.arange(50), 'y': np.arange(50) ** 2}})\n"
            f"print(frame_{i}.describe())\n"
        )
    if kind == 4:
        return f"!ls -la | head -3\nprint('cell {i}', {_ref('value', i, 2)})\n"
    if kind == 5:
        return (
            f"params_{i} = {{'window': {i % 30 + 2}, 'alpha': {i / 1000:.3f}, 'name': 'run-{i}'}}\n"
            f"summary_{i} = json.dumps(params_{i}, sort_keys=True)\n"
            f"summary_{i}\n"
        )
    if kind == 6:
        return (
            f"scores_{i} = []\n"
            f"for step in range({i % 9 + 3}):\n"
            f"    signal = {_ref('Signal', i, 5)}([step, step + 1, step + 2])\n"
            f"    scores_{i}.append(signal.score())\n"
            f"max(scores_{i})\n"
        )
    if kind == 7:
        return f"?{_ref('feature', i, 7)}\nhelp_{i} = {_ref('feature', i, 7)}.__doc__\n"
    if kind == 8:
        return (
            f"%%time\n"
            f"total_{i} = 0.0\n"
            f"for k in range(100):\n"
            f"    total_{i} += math.sin(k / {i + 1})\n"
        )
    return f"df_{i} = pd.read_csv('{PRICES}')\ndf_{i}['close'].rolling({i % 20 + 2}).mean().tail()\n"


def write_synthetic_notebook(folder: Path, code_cells: int) -> Path:
    """``folder/research.ipynb`` with ``code_cells`` code cells (+ markdown between), beside the prices CSV."""
    import shutil

    from tests.fixtures_notebooks import PRICES_CSV

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(PRICES_CSV, folder / PRICES)
    cells: list = []
    for i in range(code_cells):
        if i % 3 == 0:
            cells.append({"cell_type": "markdown", "source": f"## Step {i}\nWhat cell {i} tries, and why."})
        cells.append(_code_cell(i))
    return write_notebook(folder / "research.ipynb", cells)


ENTRY = "if blankly.is_deployed:\n    strategy.start()\n"


SYNTHETIC_SYMBOL = "SYN-USD"
FIRST_BAR = 946684800  # 2000-01-01 00:00 UTC


def write_synthetic_prices(path: Path, bars: int, seed: int = 7) -> Path:
    """``bars`` daily bars of a random walk (``time,open,high,low,close,volume``, epoch seconds), the
    same for the same ``bars`` and ``seed``: enough swings for an RSI strategy to trade."""
    import math
    import random

    rng = random.Random(seed)
    price, rows = 100.0, ["time,open,high,low,close,volume"]
    for i in range(bars):
        opened = price
        price = opened * math.exp(rng.gauss(0.0003, 0.02))
        high = max(opened, price) * (1 + abs(rng.gauss(0, 0.004)))
        low = min(opened, price) * (1 - abs(rng.gauss(0, 0.004)))
        volume = rng.randint(10**5, 10**6)
        rows.append(f"{FIRST_BAR + i * 86400},{opened:.4f},{high:.4f},{low:.4f},{price:.4f},{volume}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")
    return path


def synthetic_period(bars: int, history: int = 60) -> tuple[str, str]:
    """(start_date, end_date) of a backtest over ``bars`` synthetic bars, leaving ``history`` bars before it."""
    import time

    def day(i: int) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(FIRST_BAR + i * 86400))

    return day(history), day(bars - 1)

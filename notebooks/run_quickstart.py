"""Run the quickstart notebook headless, as the README's first command does.

Executes ``quickstart.ipynb`` in a real kernel (nbclient) against the embedded
local deployment server, writes the executed copy beside it (or to --output),
and prints the backtest's metrics as the server reported them. Exits non-zero
with the failing cell's error when anything goes wrong.

If the embedded server was not already running for this user, it is stopped at
the end, so a headless run leaves nothing behind.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARKER = "BLANKLY_METRICS "


def _printed(nb) -> str:
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                text.append(out.get("text", ""))
    return "".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", type=Path, default=HERE / "quickstart.ipynb")
    parser.add_argument("--output", type=Path, default=None,
                        help="where to write the executed notebook (default: not written)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    parser.add_argument("--kernel", default="python3", help="kernel name to run it with")
    args = parser.parse_args(argv)

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    from blankly_magics import embedded

    home = embedded.data_home()
    was_running = (home / "server.json").exists()

    nb = nbformat.read(str(args.notebook), as_version=4)
    client = NotebookClient(
        nb,
        timeout=args.timeout,
        kernel_name=args.kernel,
        resources={"metadata": {"path": str(args.notebook.parent)}},
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        print(f"the quickstart failed in a cell:\n{exc}", file=sys.stderr)
        return 1
    finally:
        if args.output:
            nbformat.write(nb, str(args.output))
        if not was_running:
            embedded.stop_local_server(home)

    printed = _printed(nb)
    line = next((ln for ln in printed.splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        print("the quickstart ran but printed no metrics", file=sys.stderr)
        return 1
    metrics = json.loads(line[len(MARKER):])
    width = max(map(len, metrics))
    print("Backtest metrics from the embedded deployment server:")
    for name, value in metrics.items():
        print(f"  {name:<{width}}  {value}")
    for ln in printed.splitlines():
        if ln.startswith("metrics match:"):
            print(ln)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Notebook -> script: choosing cells, stripping IPython syntax, checking the result.

Every notebook here is a real .ipynb written with nbformat and read back with
read_notebook; scripts that should run are run with the real interpreter.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from blankly_magics.export import (
    Cell,
    ExportError,
    cells_from_sources,
    export_script,
    preview_cells,
    read_notebook,
)
from tests.fixtures_notebooks import RSI_ENTRY, RSI_IMPORTS, RSI_LOGIC, RSI_SETUP, rsi_cells, write_notebook


def notebook_cells(tmp_path: Path, cells: list, name: str = "nb.ipynb") -> list[Cell]:
    return read_notebook(write_notebook(tmp_path / name, cells))


def export(tmp_path: Path, cells: list, **kwargs):
    return export_script(notebook_cells(tmp_path, cells), notebook_name="nb.ipynb", **kwargs)


def run_script(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(text)
    return subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def taken(result) -> list[int]:
    return [c.index for c in result.cells]


# ----------------------------------------------------------------- reading notebooks


def test_read_notebook_gives_every_cell_with_ids_tags_and_types(tmp_path):
    cells = notebook_cells(
        tmp_path,
        [
            {"cell_type": "markdown", "source": "# Title"},
            {"source": "x = 1", "tags": ["blankly", "other"]},
            {"cell_type": "raw", "source": "raw text"},
        ],
    )
    assert [(c.index, c.cell_type) for c in cells] == [(0, "markdown"), (1, "code"), (2, "raw")]
    assert cells[1].source == "x = 1"
    assert cells[1].tags == ("blankly", "other")
    assert all(c.id for c in cells)  # nbformat 4.5 ids


def test_read_notebook_joins_list_sources(tmp_path):
    path = tmp_path / "lines.ipynb"
    write_notebook(path, ["a = 1\nb = 2\n"])
    nb = json.loads(path.read_text())
    nb["cells"][0]["source"] = ["a = 1\n", "b = 2\n"]
    path.write_text(json.dumps(nb))
    assert read_notebook(path)[0].source == "a = 1\nb = 2\n"


@pytest.mark.parametrize(
    "content, expected",
    [
        ("not json {", "nb.ipynb is not valid JSON"),
        ('{"a": 1}', "not a Jupyter notebook"),
        ('{"nbformat": 3, "nbformat_minor": 0, "worksheets": [], "metadata": {}}', "nbformat 3 notebook"),
    ],
)
def test_read_notebook_rejects_files_that_are_not_v4_notebooks(tmp_path, content, expected):
    path = tmp_path / "nb.ipynb"
    path.write_text(content)
    with pytest.raises(ExportError, match=expected):
        read_notebook(path)


def test_read_notebook_rejects_a_non_python_notebook_and_a_missing_file(tmp_path):
    path = write_notebook(
        tmp_path / "r.ipynb",
        ["x <- 1"],
        metadata={"kernelspec": {"name": "ir", "display_name": "R", "language": "R"}},
    )
    with pytest.raises(ExportError, match=r"r.ipynb is not a Python notebook \(its language is r\)"):
        read_notebook(path)
    with pytest.raises(ExportError, match="no such notebook"):
        read_notebook(tmp_path / "missing.ipynb")


def test_cells_from_sources_numbers_history_cells():
    cells = cells_from_sources(["a = 1", "b = a"], start=1)
    assert [(c.index, c.source, c.id) for c in cells] == [(1, "a = 1", None), (2, "b = a", None)]


# ----------------------------------------------------------------- choosing cells


def test_tags_and_directives_choose_cells_in_notebook_order(tmp_path):
    result = export(
        tmp_path,
        [
            "import math",
            {"source": "A = math.pi", "tags": ["blankly"]},
            "unused = 1",
            "#| blankly\nB = A * 2",
            "#|blankly: export\nC = B + 1",
        ],
    )
    assert result.selection == "marked"
    assert taken(result) == [1, 3, 4]
    assert [c.reason for c in result.cells] == ["tag `blankly`", "`#| blankly`", "`#| blankly`"]
    # math is defined in the first cell, which is not marked: reported, naming both cells as JupyterLab numbers them.
    assert result.problems == [
        "cell 2 (`A = math.pi`), line 1: `math` is not defined in the exported code; it is defined in cell 1 "
        "(`import math`) (not marked), which is not exported: tag it `blankly` or make `#| blankly` its first line "
        "(and remove any skip mark)"
    ]


def test_skip_directive_and_skip_tag_win(tmp_path):
    result = export(
        tmp_path,
        [
            "x = 1",
            "#| blankly: skip\ny = 2",
            {"source": "z = 3", "tags": ["blankly", "blankly-skip"]},
            "print(x)",
        ],
    )
    assert result.selection == "all"
    assert taken(result) == [0, 3]
    reasons = {c.index: c.reason for c in result.choices}
    assert reasons[1] == "skipped by `#| blankly: skip`"
    assert reasons[2] == "skipped by tag `blankly-skip`"
    assert result.problems == []


def test_nothing_marked_takes_every_code_cell_but_ipython_only_and_empty_ones(tmp_path):
    result = export(
        tmp_path,
        [
            {"cell_type": "markdown", "source": "# notes"},
            "%matplotlib inline\n!ls -la",
            "",
            "import math\nR = math.sqrt(4)",
            "print(R)",
        ],
    )
    assert result.selection == "all"
    assert taken(result) == [3, 4]
    reasons = {c.index: (c.exported, c.reason) for c in result.choices}
    assert reasons[1] == (False, "only IPython commands")
    assert reasons[2] == (False, "empty")
    assert 0 not in reasons  # markdown cells are not choices
    assert result.problems == []


def test_unknown_directive_is_a_problem_naming_the_cell(tmp_path):
    result = export(tmp_path, ["#| blankly: skp\nx = 1", "#| blankly-skip\nz = 3", "#| blankly\ny = 2", "#| blankly_magics_not_ours\nw = 4"])
    assert len(result.problems) == 2
    assert result.problems[0].startswith("cell 1 (`x = 1`): unknown directive `#| blankly: skp`")
    assert result.problems[1].startswith("cell 2 (`z = 3`): unknown directive `#| blankly-skip`")


def test_explicit_selection_overrides_the_marks(tmp_path):
    cells = notebook_cells(tmp_path, ["a = 1", "#| blankly: skip\nb = a", "#| blankly\nc = 3"])
    result = export_script(cells, select=[0, 1])
    assert result.selection == "explicit"
    assert taken(result) == [0, 1]
    assert {c.index: c.reason for c in result.choices}[2] == "not chosen"
    bad = export_script(cells, select=[7])
    assert "there is no cell 8 to choose (the notebook has 3 cells)" in bad.problems


def test_preview_cells_lists_code_cells_with_first_lines(tmp_path):
    cells = notebook_cells(tmp_path, rsi_cells())
    choices = preview_cells(cells)
    assert [(c.index, c.exported) for c in choices] == [(1, True), (2, False), (3, True), (4, True)]
    assert choices[0].first_line == "import blankly"  # the directive line is not shown
    assert choices[1].reason == "not marked"
    assert choices[0].id == cells[1].id


# ----------------------------------------------------------------- the script


def test_script_has_header_and_cell_markers_and_entry_block(tmp_path):
    cells = notebook_cells(tmp_path, rsi_cells(), name="rsi.ipynb")
    result = export_script(cells, entry=RSI_ENTRY, notebook_name="rsi.ipynb")
    text = result.text
    assert text.startswith("# Blankly model script generated by blankly_magics from rsi.ipynb.")
    for c in cells[1:]:
        marker = f"# %% [cell {c.index + 1}, id {c.id}] rsi.ipynb"  # numbered as JupyterLab shows it; the id for tools
        assert (marker in text) == (c.index != 2)
    assert '\nif __name__ == "__main__":\n    if blankly.is_deployed:\n        strategy.start()' in text
    assert result.problems == [] and result.warnings == []
    compile(text, "bot.py", "exec")


def test_entry_is_indented_except_inside_multiline_strings(tmp_path):
    entry = 'msg = """first\nsecond line\n"""\nprint(msg.splitlines()[1], VALUE)\n'
    result = export(tmp_path, ["VALUE = 41 + 1"], entry=entry)
    assert result.problems == []
    proc = run_script(tmp_path, result.text)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "second line 42\n"


def test_deploy_cell_in_the_notebook_becomes_the_entry(tmp_path):
    result = export(tmp_path, ["#| blankly\nN = 3", "%%blankly_deploy --backtest\nprint('N is', N)"])
    assert taken(result) == [0]
    assert "%%blankly_deploy cell" in result.entry_from
    proc = run_script(tmp_path, result.text)
    assert proc.stdout == "N is 3\n"
    # A given entry replaces the notebook's deploy cell.
    result = export(tmp_path, ["#| blankly\nN = 3", "%%blankly_deploy\nprint('cell')"], entry="print('given', N)")
    assert run_script(tmp_path, result.text).stdout == "given 3\n"


def test_existing_main_block_is_kept_when_there_is_no_entry(tmp_path):
    result = export(tmp_path, ['X = 5\nif __name__ == "__main__":\n    print("main", X)'])
    assert result.entry_from.startswith('the `if __name__ == "__main__":` block in cell 1 (`X = 5`)')
    assert run_script(tmp_path, result.text).stdout == "main 5\n"


# ----------------------------------------------------------------- IPython syntax


IPYTHON_CELL = '''import json
%matplotlib inline
files = !ls
listing = %sx ls
json?
??json.dumps
!echo hello \\
    world
DOC = """
%this is text, not a magic
!and this is not a shell line
"""
for i in range(2):
    %time total = i * 10
    !echo inside a loop
print(DOC.splitlines()[1], total)
'''


def test_magics_shell_lines_and_help_are_commented_out_and_the_script_runs(tmp_path):
    result = export(tmp_path, [IPYTHON_CELL])
    text = result.text
    assert "# [removed, IPython magic] %matplotlib inline" in text
    assert "# [removed, shell command] files = !ls" in text
    assert "# [removed, IPython magic] listing = %sx ls" in text
    assert "# [removed, IPython help] json?" in text
    assert "# [removed, IPython help] ??json.dumps" in text
    assert "# [removed, shell command] !echo hello \\\n    # world" in text
    assert "    pass  # [removed, shell command] !echo inside a loop" in text
    assert "%this is text, not a magic\n!and this is not a shell line" in text  # string untouched
    assert "get_ipython" not in text
    assert result.problems == []
    proc = run_script(tmp_path, text)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "%this is text, not a magic 10\n"


def test_get_ipython_and_display_statements_are_commented_out(tmp_path):
    result = export(
        tmp_path,
        [
            "get_ipython().run_line_magic('matplotlib', 'inline')\nx = 2\ndisplay(x,\n        x)\nprint(x)",
        ],
    )
    assert "# [removed, IPython call] get_ipython()" in result.text
    assert "# [removed, IPython display] display(x," in result.text
    assert result.problems == []
    assert run_script(tmp_path, result.text).stdout == "2\n"


def test_display_that_the_code_defines_is_kept(tmp_path):
    result = export(tmp_path, ["def display(v):\n    print('shown', v)\ndisplay(7)"])
    assert "[removed" not in result.text
    assert run_script(tmp_path, result.text).stdout == "shown 7\n"


def test_a_bash_cell_is_dropped_with_a_note_and_capture_keeps_its_body(tmp_path):
    result = export(
        tmp_path,
        ["#| blankly\nA = 1", "#| blankly\n%%bash\necho hi", "#| blankly\n%%capture\nB = A + 1\nprint(B)"],
    )
    assert taken(result) == [0, 2]
    assert {c.index: c.reason for c in result.choices}[1] == "a %%bash cell, which cannot run in a script"
    assert "cell 2 (`%%bash`): dropped, a %%bash cell cannot run in a script" in result.notes
    assert "echo hi" not in result.text
    assert run_script(tmp_path, result.text).stdout == "2\n"


def test_pip_install_lines_become_requirements(tmp_path):
    result = export(
        tmp_path,
        [
            "!pip install -q ta==0.10.2 'pyyaml>=6' --upgrade\n%conda install -c conda-forge tulipy=0.4",
            "import math\n%pip install -r reqs.txt\nprint(math.e)",
        ],
    )
    assert [r for r, _ in result.pip_requirements] == ["ta==0.10.2", "pyyaml>=6", "tulipy==0.4.*"]
    # the first cell is only commands, still harvested
    assert result.pip_requirements[0][1] == "cell 1 (`!pip install -q ta==0.10.2 'pyyaml>=6...`), line 1"
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("cell 2 (`import math`), line 2: ")
    assert "-r reqs.txt not taken into requirements.txt" in result.warnings[0]
    assert "# [in requirements.txt] %pip install -r reqs.txt" in result.text


def test_future_imports_move_to_the_top(tmp_path):
    result = export(tmp_path, ["X = 1", "from __future__ import annotations\ndef f(v: Later) -> Later:\n    return v"])
    lines = result.text.splitlines()
    assert lines[2] == "from __future__ import annotations"
    assert result.problems == []  # annotations are not evaluated, so `Later` is no error
    compile(result.text, "bot.py", "exec")


def test_top_level_await_is_reported(tmp_path):
    result = export(tmp_path, ["import asyncio\nawait asyncio.sleep(0)"])
    assert result.problems[0].startswith("cell 1 (`import asyncio`), line 2: top-level `await` works in IPython")


# ----------------------------------------------------------------- checks


def test_syntax_error_names_the_cell_and_its_line(tmp_path):
    cells = notebook_cells(tmp_path, ["x = 1", "y = 2\nz = (3 +\nprint(y)", "w = 4"])
    result = export_script(cells)
    assert result.problems == ["cell 2 (`y = 2`), line 2: syntax error: '(' was never closed: `z = (3 +`"]


def test_syntax_error_in_the_entry_names_the_entry(tmp_path):
    result = export(tmp_path, ["x = 1"], entry="print(x)\nif x\n    pass")
    assert result.problems and result.problems[0].startswith("the entry point, line 2: syntax error")


def test_undefined_name_reports_the_cell_that_defines_it(tmp_path):
    cells = notebook_cells(
        tmp_path,
        [
            "RSI_PERIOD = 14",
            "#| blankly\nimport math",
            "#| blankly\ndef period():\n    return RSI_PERIOD + math.floor(1.5)",
        ],
    )
    result = export_script(cells)
    assert len(result.problems) == 1
    problem = result.problems[0]
    assert problem.startswith("cell 3 (`def period():`), line 3: `RSI_PERIOD` is not defined")
    assert "defined in cell 1 (`RSI_PERIOD = 14`) (not marked), which is not exported" in problem
    assert "(id " not in problem
    assert "tag it `blankly`" in problem


def test_undefined_name_defined_nowhere_and_ipython_only_names(tmp_path):
    result = export(tmp_path, ["print(missing_thing)", "print(Out[1])"])
    assert any("`missing_thing` is used but never defined" in p for p in result.problems)
    assert any("`Out` exists only inside IPython" in p for p in result.problems)


def test_name_bound_only_by_a_shell_assignment_is_explained(tmp_path):
    result = export(tmp_path, ["files = !ls\nprint(files)"])
    assert len(result.problems) == 1
    assert "its only definition (cell 1 (`files = !ls`), line 1: `files = !ls`)" in result.problems[0]
    assert "`files = !ls`" in result.problems[0]


def test_no_false_alarms_for_a_normal_strategy(tmp_path):
    strategy = '''import blankly
from blankly import StrategyState
from collections import deque as Deque

class Signals:
    window: int = 14
    def compute(self, values):
        return [v for v in values if (w := v) > 0] + [w]

def init(symbol, state: StrategyState):
    state.variables["h"] = Deque(maxlen=Signals.window)

def price_event(price, symbol, state: StrategyState, *args, **kwargs):
    global LAST
    LAST = price
    try:
        state.variables["h"].append(price)
    except KeyError as err:
        print(err, __file__, __name__)
    with open(__file__) as fh:
        first = fh.readline()
    for i, (a, b) in enumerate([(1, 2)]):
        total = sum(x for x in (a, b)) + i
    lam = lambda q=price: q * 2
    match price:
        case {"p": p}:
            print(p)
        case [first_item, *rest]:
            print(first_item, rest)
        case _:
            pass
    return lam(), total, first, LAST, Signals().compute([1])
'''
    result = export(tmp_path, [strategy])
    assert result.problems == []


NESTED_SCOPES = '''def outer(a):
    def inner():
        nonlocal a
        return a + missing_in_closure
    return [x + missing_in_comprehension for x in range(a)] + [inner]

class Holder:
    attr = missing_in_class_body
    def method(self):
        global SET_LATER
        SET_LATER = 1
        return (lambda y: y + missing_in_lambda)(self)

def listcomp():
    return genexpr_value

print(SET_LATER, outer(1), Holder().method(), listcomp())
'''


def test_undefined_names_are_found_in_every_nested_scope(tmp_path):
    result = export(tmp_path, [NESTED_SCOPES])
    reported = sorted(re.search(r": `(\w+)` is used", p).group(1) for p in result.problems)
    assert reported == ["genexpr_value", "missing_in_class_body", "missing_in_closure",
                        "missing_in_comprehension", "missing_in_lambda"]
    assert all("is used but never defined or imported anywhere" in p for p in result.problems)


class PublicOnlyTable:
    """A symtable seen through its public methods only, as if CPython's private table had moved."""

    def __init__(self, table) -> None:
        self.table = table

    def get_type(self):
        return self.table.get_type()

    def get_name(self):
        return self.table.get_name()

    def get_symbols(self):
        return self.table.get_symbols()

    def get_children(self):
        return [PublicOnlyTable(child) for child in self.table.get_children()]


@pytest.mark.parametrize("source", [NESTED_SCOPES, RSI_IMPORTS + RSI_LOGIC + RSI_SETUP + RSI_ENTRY],
                         ids=["nested-scopes", "rsi-strategy"])
def test_the_name_check_without_cpythons_private_table_gives_the_same_answer(source):
    import symtable

    from blankly_magics.export.names import scope_names

    def undefined(table) -> tuple[set, list]:
        bound, loaded = scope_names(table)
        return bound, [name for name in loaded if name not in bound]

    assert undefined(PublicOnlyTable(symtable.symtable(source, "<s>", "exec"))) == \
        undefined(symtable.symtable(source, "<s>", "exec"))


def test_star_import_turns_the_check_off_with_a_note(tmp_path):
    result = export(tmp_path, ["from math import *\nprint(floor(pi))"])
    assert result.problems == []
    assert any("`import *`" in n for n in result.notes)


def test_imports_found_with_optional_ones_marked(tmp_path):
    result = export(
        tmp_path,
        [
            "import os, yaml as y\nfrom dateutil import parser\n'''\nimport not_an_import\n'''",
            "try:\n    import ujson as js\nexcept ImportError:\n    import json as js\nfrom . import nothing_relative",
        ],
    )
    found = [(i.module, i.optional) for i in result.imports]
    assert found == [("os", False), ("yaml", False), ("dateutil", False), ("ujson", True), ("json", True)]
    assert result.imports[2].where == "cell 1 (`import os, yaml as y`), line 2"


def test_secret_literals_are_warned_about_without_the_value(tmp_path):
    secret = "PK7Q2M9Z4R8T1W6Y3B5N"
    result = export(
        tmp_path,
        [
            "tokenizer = 'not-a-secret-at-all'\nsymbol = 'GOOG-USD'",
            f"api_key = '{secret}'\nconfig = {{'API_SECRET': '{secret}xyz'}}\nplaceholder_token = '********************'",
        ],
    )
    assert len(result.warnings) == 2
    assert result.warnings[0].startswith("cell 2 (`api_key = '***'`), line 1: `api_key`")
    assert "line 2: `API_SECRET`" in result.warnings[1]
    assert all(secret not in w for w in result.warnings + result.notes + result.problems)


def test_path_like_string_literals_are_collected(tmp_path):
    result = export(tmp_path, ['import pandas as pd\ndf = pd.read_csv("./data/prices.csv")\n# old = "old.csv"'])
    assert [p for p, _ in result.paths] == ["./data/prices.csv"]


# ----------------------------------------------------------------- directives and run-time names


def test_allow_undefined_directive_lets_named_names_pass_and_checks_its_names(tmp_path):
    cells = ["#| blankly: allow-undefined sm, m\nprint(sm, m)", "print(other)"]
    result = export(tmp_path, cells)
    assert len(result.problems) == 1 and "`other` is used but never defined" in result.problems[0]
    assert any(n.startswith("taken as made at run time: `sm` (`#| blankly: allow-undefined` in cell 1 (`print(sm, m)`)") for n in result.notes)
    bad = export(tmp_path, ["#| blankly: allow-undefined 2x\nx = 1", "#| blankly: allow-undefined\ny = 2"])
    assert "2x is not a Python name" in bad.problems[0] and "no name given" in bad.problems[1]
    option = export(tmp_path, cells, allow_undefined=["other"])
    assert option.problems == []


def test_a_skip_directive_wins_over_an_export_directive_in_the_same_cell(tmp_path):
    result = export(tmp_path, ["#| blankly\n#| blankly: skip\nx = 1", "#| blankly\ny = 2"])
    assert taken(result) == [1]


def test_imports_inside_functions_are_told_apart():
    from blankly_magics.export import find_imports

    text = "import os\n\ndef f():\n    if True:\n        import yaml\n    return yaml\n\nclass C:\n    import json\n"
    assert [(i.module, i.in_function) for i in find_imports(text)] == [("os", False), ("yaml", True), ("json", False)]

"""The magics in a real IPython shell against the real local deployment server.

Every cell goes through ``run_cell`` as a notebook would send it, and the test
reads what a user would see (stdout/stderr). Expected failures must print one
``UsageError: ...`` line and nothing else. No token may appear in any output.
"""
from __future__ import annotations

import json
import os
import stat
import time
import zipfile

import pytest

from blankly_magics import session as sessions
from tests.fixtures_notebooks import RSI_ENTRY, RSI_IMPORTS, RSI_LOGIC, RSI_SETUP, write_notebook
from tests.magics_shell import interrupt_when

RSI_BACKTEST = "%%blankly_deploy --backtest --notebook {nb} --initial USD=10000 --start 2010-06-01 --end 2013-03-01"
METRICS = ("Sharpe Ratio", "Compound Annual Growth Rate (%)", "Max Drawdown (%)", "Cumulative Returns (%)")


# ------------------------------------------------------------ loading and options


def test_load_is_idempotent_and_options_are_traits(cells):
    from blankly_magics.magics import BlanklyMagics, get_magics

    ip = cells.ip
    first = get_magics(ip)
    cells.run("%load_ext blankly_magics")
    assert get_magics(ip) is first
    assert [c for c in ip.configurables if isinstance(c, BlanklyMagics)] == [first]
    cells.run("%config BlanklyMagics.plan_backtest = 'small'\n%config BlanklyMagics.show_chart = False")
    assert (first.plan_backtest, first.show_chart) == ("small", False)
    cells.run("%reload_ext blankly_magics")
    assert get_magics(ip) is not first and get_magics(ip).plan_backtest == "small"  # %config settings survive
    out = cells.run("%config BlanklyMagics")
    assert "BlanklyMagics.url=<Unicode>" in out and "BLANKLY_DEPLOY_URL" in out


def test_deploy_help_lists_every_option(cells):
    out = cells.run("%%blankly_deploy?")
    for option in ("--backtest", "--name", "--project", "--model", "--plan", "--python", "--message", "--args",
                   "--to", "--start", "--end", "--initial", "--include", "--requirements", "--notebook",
                   "--dry-run", "--save", "--no-wait"):
        assert option in out
    assert "%%blankly_deploy [--backtest]" in out
    assert "--token-env" in cells.run("%blankly_login?")


def test_blankly_without_arguments_shows_the_subcommands(cells):
    out = cells.run("%blankly")
    for sub in ("projects", "models", "versions", "status", "logs", "stop", "backtests", "result", "panel"):
        assert f"    {sub}" in out
    assert "BACKTEST_ID" in cells.run("%blankly result --help")


# ------------------------------------------------------------ errors before any network


def test_not_signed_in(cells, rsi_notebook):
    for source in (
        f"%%blankly_deploy --backtest --notebook {rsi_notebook}\n{RSI_ENTRY}",
        f"%%blankly_deploy --notebook {rsi_notebook}\n{RSI_ENTRY}",
        "%blankly projects",
        "%blankly result abc",
    ):
        assert cells.fails(source) == "not signed in: run %blankly_login first"
    assert cells.run("%blankly_logout") == "Not signed in.\n"


@pytest.mark.parametrize(
    "line,message",
    [
        ("--bogus", "unrecognized arguments: --bogus"),
        ("--backtest --args '{\"to\": 1y}'", "--args is not valid JSON (Expecting ',' delimiter): give an object, e.g. --args '{\"to\": \"1y\"}'"),
        ("--backtest --args '[1, 2]'", "--args must be a JSON object, e.g. --args '{\"to\": \"1y\"}', not list"),
        ("--backtest --initial USD", "initial balance 'USD' is not ASSET=AMOUNT: write e.g. USD=10000 (several: USD=10000, BTC=0.5)"),
        ("--backtest --initial USD=lots", "initial balance 'USD=lots' is not ASSET=AMOUNT: write e.g. USD=10000 (several: USD=10000, BTC=0.5)"),
        ("--backtest --initial USD=1 --initial usd=2", "initial balance of USD given twice: give each asset once"),
        ("--backtest --start 2020-01-01", "backtest period: give both a start and an end date (like 2021-01-01), or 'to' (a span like 1y)"),
        ("--backtest --to 1y --args '{\"start_date\": \"2020-01-01\", \"end_date\": \"2020-06-01\"}'",
         "backtest period: give a start and an end date, or 'to' (a span like 1y), not both"),
        ("--backtest --to '1 year'", "backtest period: 'to' takes a span like 1y, 6M or 30d, not '1 year'"),
        ("--python three", "--python takes a version like 3.11, not 'three'"),
        ("--start 2020-01-01", "--args/--to/--start/--end/--initial are backtest options: add --backtest"),
        ("--name 'unclosed", "cannot read the options (No closing quotation): check the quotes in \"--name 'unclosed\""),
    ],
)
def test_bad_deploy_options(cells, line, message):
    assert cells.fails(f"%%blankly_deploy {line}\n{RSI_ENTRY}") == message


def test_backtest_options_read_as_the_panel_reads_its_fields(cells, rsi_notebook):
    # One parser for every face (workflow.backtest_args): the same input gives the same kwargs.
    from blankly_magics.workflow import backtest_args

    cells.run(f"%%blankly_deploy --dry-run --backtest --notebook {rsi_notebook} --initial usd=10000 "
              f"--initial 'btc=0.5, eth=2' --start 2010-06-01 --end 2013-03-01 --args '{{\"use_price\": \"open\"}}'"
              f"\n{RSI_ENTRY}")
    expected = {"use_price": "open", "start_date": "2010-06-01", "end_date": "2013-03-01",
                "initial_values": {"USD": 10000, "BTC": 0.5, "ETH": 2}}
    assert cells.last.manifest["backtest_args"] == expected
    assert backtest_args(start="2010-06-01", end="2013-03-01", initial="usd=10000, btc=0.5; eth=2",
                         extra={"use_price": "open"}) == expected  # the panel's fields


def test_load_imports_nothing_heavy(tmp_path):
    # In a fresh interpreter: the test process has long imported everything.
    import subprocess
    import sys

    code = ("import sys\nfrom IPython.core.interactiveshell import InteractiveShell\n"
            "InteractiveShell.instance().run_line_magic('load_ext', 'blankly_magics')\n"
            "print(sorted(name for name in ('requests', 'nbformat', 'ipywidgets', 'pandas', 'matplotlib', "
            "'blankly', 'blankly_magics.client', 'blankly_magics.server') if name in sys.modules))\n"
            "print('blankly_deploy' in InteractiveShell.instance().magics_manager.magics['cell'])")
    env = dict(os.environ, HOME=str(tmp_path), IPYTHONDIR=str(tmp_path / "ipython"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["[]", "True"]


def test_bad_subcommands(cells):
    assert cells.fails("%blankly nope").startswith("%blankly: argument SUBCOMMAND: invalid choice: 'nope'")
    assert cells.fails("%blankly versions") == (
        "%blankly versions: the following arguments are required: --model (see `%blankly versions --help`)"
    )
    assert cells.fails("%blankly_deploy --backtest").startswith("%%blankly_deploy is a cell magic")


def test_a_typo_gets_did_you_mean_and_deploy_points_to_the_cell_magic(cells):
    typo = cells.fails("%blankly stauts")
    assert typo.startswith("%blankly: argument SUBCOMMAND: invalid choice: 'stauts' (choose from 'projects', ")
    assert typo.endswith("'panel'); did you mean 'status'? (see `%blankly --help`)")
    assert "did you mean" not in cells.fails("%blankly xyzzy")
    assert cells.fails("%blankly deploy --model RSI") == (
        "%blankly deploy: deploying is the cell magic %%blankly_deploy: put it on the first line of the cell that "
        "holds the entry point, e.g. strategy.start()"
    )
    assert cells.fails("%blankly backtest").startswith("%blankly backtest: backtesting is the cell magic "
                                                       "%%blankly_deploy --backtest")
    assert cells.fails("%blankly login") == "%blankly login: signing in is %blankly_login"


def test_empty_deploy_cell(cells, rsi_notebook):
    assert cells.fails(f"%%blankly_deploy --dry-run --notebook {rsi_notebook}\n\n").startswith(
        "the %%blankly_deploy cell is empty"
    )


def test_missing_notebook_path(cells, tmp_path):
    missing = tmp_path / "nope.ipynb"
    assert cells.fails(f"%%blankly_deploy --dry-run --notebook {missing}\nstrategy.start()") == (
        f"notebook not found: {missing} (from --notebook); pass the path of a saved .ipynb file"
    )


def test_undefined_name_names_the_cell(cells, tmp_path):
    nb = write_notebook(tmp_path / "broken.ipynb", [
        RSI_IMPORTS,
        "#| blankly\nstrategy = blankly.Strategy(exchange)\n",
    ])
    message = cells.fails(f"%%blankly_deploy --dry-run --notebook {nb}\nstrategy.start()")
    assert message.startswith("cannot build the model: ")
    assert "cell 2 (`strategy = blankly.Strategy(exchange)`), line 2: `exchange`" in message


# ------------------------------------------------------------ dry run and --save (offline)


def test_dry_run_shows_summary_and_saves_the_zip(cells, rsi_notebook, tmp_path):
    target = tmp_path / "out" / "model.zip"
    (tmp_path / "out").mkdir()
    out = cells.run(f"%%blankly_deploy --dry-run --backtest --notebook {rsi_notebook} --save {target} "
                    f"--initial USD=10000 --to 1y\n{RSI_ENTRY}")
    assert f"Notebook: {rsi_notebook.resolve()} (found via --notebook)" in out
    assert "Model from rsi.ipynb: 3 cell(s) taken (marked)" in out
    assert "GOOG-USD-1d.csv" in out and "Requirements: blankly" in out
    assert f"Saved the model zip to {target}" in out
    assert "Dry run: nothing was uploaded" in out
    bundle = cells.last
    assert "strategy.start()" in bundle.script and "def price_event" in bundle.script
    assert bundle.manifest["backtest_args"] == {"initial_values": {"USD": 10000}, "to": "1y"}
    with zipfile.ZipFile(target) as zf:
        names = set(zf.namelist())
        assert {"model/blankly.json", "model/bot.py", "model/GOOG-USD-1d.csv"} <= names
        assert json.loads(zf.read("model/blankly.json"))["backtest_args"]["to"] == "1y"
        assert zf.read("model/bot.py").decode() == bundle.script
    assert not list((tmp_path / "out").glob(".*tmp"))  # nothing half-written left over
    assert cells.fails(f"%%blankly_deploy --dry-run --notebook {rsi_notebook} --save {tmp_path}/x.txt\n{RSI_ENTRY}") \
        == f"--save {tmp_path}/x.txt: give a file name ending in .zip, e.g. model.zip"


@pytest.mark.blankly
def test_dry_run_from_the_kernel_history(cells, tmp_path, monkeypatch, prices_csv):
    import shutil

    from blankly_magics.export.manifest import default_backtest_bytes, default_settings_bytes

    monkeypatch.chdir(tmp_path)
    shutil.copy(prices_csv, tmp_path / prices_csv.name)  # the cells really run, as in a kernel
    (tmp_path / "settings.json").write_bytes(default_settings_bytes())  # blankly wants these beside it
    (tmp_path / "backtest.json").write_bytes(default_backtest_bytes())
    for source in ("%load_ext blankly_magics", RSI_IMPORTS, "x = 1 + 1", RSI_LOGIC, RSI_SETUP):
        cells.ip.run_cell(source, store_history=True)
    cells.capsys.readouterr()
    out = cells.run(f"%%blankly_deploy --dry-run --backtest\n{RSI_ENTRY}")
    assert "No notebook file found (pass --notebook PATH): using the kernel's input history (4 cells)" in out
    bundle = cells.last
    assert "x = 1 + 1" not in bundle.script  # unmarked cells are left out when some are marked
    assert "def price_event" in bundle.script and "load_ext" not in bundle.script


@pytest.mark.blankly
def test_unsaved_edits_are_reported(cells, rsi_notebook):
    edited = RSI_LOGIC.replace("rsi[-1] < 30", "rsi[-1] < 25")
    for source in (RSI_IMPORTS, edited):
        cells.ip.run_cell(source, store_history=True)
    out = cells.run(f"%%blankly_deploy --dry-run --notebook {rsi_notebook}\n{RSI_ENTRY}")
    assert out.startswith(f"Notebook: {rsi_notebook.resolve()} (found via --notebook)\n"
                          "Note: the notebook on disk differs from what you ran: save it (Ctrl-S) "
                          "to deploy your latest edits\n")


def test_a_build_error_says_it_comes_from_the_saved_notebook_whose_cell_was_edited_since(cells, tmp_path):
    saved = "#| blankly\ndef size():\n    return LIMIT * 2\n"  # LIMIT: defined nowhere in the saved file
    notebook = write_notebook(tmp_path / "draft.ipynb", ["#| blankly\nimport math\n", saved])
    cells.ip.run_cell("#| blankly\nimport math\n", store_history=True)
    cells.ip.run_cell("#| blankly\ndef size():\n    return 10 * 2\n", store_history=True)  # fixed, not saved
    message = cells.fails(f"%%blankly_deploy --dry-run --notebook {notebook}\nprint(size())")
    assert message.startswith("In the saved draft.ipynb (cell 2 was edited since it was saved: save it with "
                              "Ctrl-S to build what you ran): cannot build the model: cell 2 (`def size():`)")
    assert "LIMIT" in message
    assert "Note: the notebook on disk differs" not in cells.seen[-1]  # said once, in the error


# ------------------------------------------------------------ signing in


def test_login_token_sources(cells, local_server, monkeypatch, isolated):
    token = local_server.refresh_token("bob")
    cells.secrets.add(token)
    url = local_server.url

    monkeypatch.setenv("BLANKLY_REFRESH_TOKEN", token)
    assert cells.run(f"%blankly_login --url {url}") == f"Signed in to {url} as bob\n"
    saved = isolated / ".local" / "share" / "blankly" / "auth.json"  # shared with the Blankly CLI
    assert json.loads(saved.read_text())["token"] == token
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    monkeypatch.delenv("BLANKLY_REFRESH_TOKEN")

    # the CLI's file alone, with the URL from the environment
    monkeypatch.setenv("BLANKLY_DEPLOY_URL", url)
    assert cells.run("%blankly_login") == f"Signed in to {url} as bob\n"
    assert cells.run("%blankly_logout") == f"Signed out of {url}\n"
    assert not saved.exists()
    assert cells.fails("%blankly projects") == "not signed in: run %blankly_login first"

    # the logout revoked that token on the server
    monkeypatch.setenv("OLD_TOKEN", token)
    assert "refused the refresh token" in cells.fails("%blankly_login --token-env OLD_TOKEN")

    # nothing saved: a hidden prompt (getpass) asks for it
    other = local_server.refresh_token("carol")
    cells.secrets.add(other)
    prompts = []
    monkeypatch.setattr("getpass.getpass", lambda text: prompts.append(text) or other)
    assert cells.run("%blankly_login") == f"Signed in to {url} as carol\n"
    assert prompts == ["Blankly refresh token (hidden): "]
    assert "Personal" in cells.run("%blankly projects")


def test_login_errors(cells, local_server, monkeypatch):
    url = local_server.url
    assert "EMPTY_VAR" in cells.fails(f"%blankly_login --url {url} --token-env EMPTY_VAR")
    monkeypatch.setenv("WRONG", "not-a-real-token")
    assert "refused the refresh token" in cells.fails(f"%blankly_login --url {url} --token-env WRONG")
    assert cells.fails(f"%blankly_login --url {url} --data-dir /tmp/x") == (
        "--data-dir is for the embedded local server: drop --url (or --data-dir)"
    )
    assert "not a deployment server URL" in cells.fails("%blankly_login --url ftp://example --token-env WRONG")


def test_login_embedded_local_server(cells, tmp_path):
    from blankly_magics import embedded

    home = tmp_path / "bm"  # BLANKLY_MAGICS_HOME of the private home
    try:
        out = cells.run("%blankly_login")
        info = json.loads((home / "server.json").read_text())
        assert out == f"Signed in to the local deployment server at {info['url']} as local\n"
        assert info["url"].startswith("http://127.0.0.1:")
        cells.secrets.add((home / "local-token").read_text().strip())
        assert "Personal" in cells.run("%blankly projects")
        # a second login attaches to the same server
        assert cells.run("%blankly_login") == out
        embedded.stop_local_server(home)
        assert cells.fails("%blankly projects") == (
            f"cannot reach the deployment server at {info['url']}: is it running? (/project/list); "
            "run %blankly_login to start the local server again"
        )
    finally:
        embedded.stop_local_server(home)


def test_server_down_is_one_line(cells, alice):
    alice.stop()
    message = cells.fails("%blankly projects")
    assert message == f"cannot reach the deployment server at {alice.url}: is it running? (/project/list)"


def test_expired_id_token_is_exchanged_again_then_a_revoked_token_says_sign_in(cells, server_factory, monkeypatch):
    import socket

    with socket.socket() as sock:  # the same port across restarts, so the signed-in URL stays right
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    alice = server_factory(args=["--port", str(port)])
    token = alice.refresh_token("alice")
    cells.secrets.add(token)
    monkeypatch.setenv("ALICE_TOKEN", token)
    cells.run(f"%blankly_login --url {alice.url} --token-env ALICE_TOKEN")

    def new_signing_key():  # every idToken issued so far stops working: the next call gets a 401
        alice.stop()
        (alice.data_dir / "signing.key").unlink()
        alice.start()
        assert alice.url == f"http://127.0.0.1:{port}"

    new_signing_key()
    assert "Personal" in cells.run("%blankly projects")  # 401, one re-exchange, the call replayed

    revoked = alice.request("POST", "/auth/logout", user="alice", data={"refreshToken": alice.refresh_token("alice")})
    assert revoked.status_code == 200
    new_signing_key()
    message = cells.fails("%blankly projects")
    assert "refused the refresh token" in message and "sign in again with %blankly_login" in message


def test_a_model_name_two_models_share_is_refused_with_both_ids(cells, alice, rsi_notebook):
    # Never one of them picked silently: every --model lookup says which ids there are.
    client = sessions.current().client
    first = client.create_model("twin")["modelId"]
    second = client.create_model("twin")["modelId"]
    message = cells.fails("%blankly versions --model twin")
    assert message.startswith("several models are named 'twin' in your projects: ")
    assert message.endswith("; pass --model with one of these ids")
    assert f"{first} (created " in message and f"{second} (created " in message
    for line in ("status --model twin", "backtests --model twin", "logs --model twin", "stop --model twin"):
        assert cells.fails(f"%blankly {line}") == message
    assert cells.fails(f"%%blankly_deploy --notebook {rsi_notebook} --model twin\n{RSI_ENTRY}") == message
    assert cells.fails("%blankly versions --model TWIN").startswith("several models are named 'TWIN' in your projects: ")
    in_project = cells.fails(f"%blankly versions --model twin --project {client.user_id}")
    assert in_project.startswith(f"several models are named 'twin' in project {client.user_id}: ")
    assert cells.run(f"%blankly versions --model {second}").endswith(f"Versions of model {second}: none\n")


# ------------------------------------------------------------ backtests and deployments


@pytest.mark.slow
def test_backtest_the_rsi_notebook_and_inspect_it(cells, alice, rsi_notebook):
    out = cells.run(f"{RSI_BACKTEST.format(nb=rsi_notebook)} -m 'first try'\n{RSI_ENTRY}")
    assert "Model from rsi.ipynb: 3 cell(s) taken (marked)" in out
    assert f"Uploading to a new model 'rsi' on {alice.url} for a backtest..." in out
    result = cells.last
    assert result.status == "completed", out
    assert f"Backtest {result.backtest_id}: completed" in out
    for metric in METRICS:
        assert metric in out and metric in result.metrics
    assert f"Trades: {len(result.trades)}" in out and len(result.trades) > 0
    assert f"%blankly result {result.backtest_id}" in out
    frame = result.account_values
    assert list(frame.columns) == ["time", "value"] and frame["value"].iloc[0] == 10000
    assert "<table class='blankly-metrics'>" in result._repr_html_()
    assert "data:image/png;base64," in result._repr_html_()  # the equity chart
    assert "Cumulative Returns" in result.logs()

    # the notebook remembers its model: the next backtest adds a version to it
    model_id = result.model_id
    remembered = json.loads((rsi_notebook.parent / ".blankly_magics.json").read_text())
    server_id = alice.health()["serverId"]  # by the server's identity, whatever its URL
    assert remembered["models"][f"server:{server_id}|rsi.ipynb"]["modelId"] == model_id
    out = cells.run(f"{RSI_BACKTEST.format(nb=rsi_notebook)} --no-wait\n{RSI_ENTRY}")
    assert f"Uploading to model rsi ({model_id})" in out
    second = cells.last
    assert second.model_id == model_id and second.backtest_id != result.backtest_id
    assert f"Not waiting: fetch it with %blankly result {second.backtest_id}" in out
    out = cells.run(f"%blankly result {second.backtest_id} --wait")
    assert cells.last.status == "completed" and "Sharpe Ratio" in out
    # a model and a project named explicitly, by name
    out = cells.run(f"{RSI_BACKTEST.format(nb=rsi_notebook)} --no-wait --model RSI --project personal\n{RSI_ENTRY}")
    assert f"Uploading to model rsi ({model_id})" in out and cells.last.model_id == model_id

    # the subcommands
    out = cells.run("%blankly projects")
    assert "Projects (1)" in out and "Personal" in out
    out = cells.run("%blankly models")
    assert "Models (1)" in out and model_id in out and "rsi" in out
    out = cells.run("%blankly versions --model rsi")
    assert f"Versions of model {model_id} (3)" in out
    assert "Models (1)" in cells.run("%blankly models --project Personal")
    out = cells.run(f"%blankly backtests --model {model_id}")
    assert result.backtest_id in out and second.backtest_id in out and "first try" in out
    out = cells.run(f"%blankly result {result.backtest_id}")
    again = cells.last
    assert again.metrics == result.metrics and "Sharpe Ratio" in out
    out = cells.run(f"%blankly logs --backtest {result.backtest_id} --tail 3")
    assert out.startswith("(last 3 of ") and "Volatility" in out
    assert "Model status" in cells.run("%blankly status")
    assert cells.fails("%blankly versions --model nosuch").startswith("no model 'nosuch' in your projects; models: rsi (")
    assert cells.fails("%blankly result nosuch").endswith("(HTTP 404, /backtest/result)")


@pytest.mark.slow
def test_no_period_backtests_the_price_files_span_and_an_empty_one_says_what_was_tried(cells, alice, rsi_notebook):
    cell = f"%%blankly_deploy --backtest --notebook {rsi_notebook} --initial USD=10000{{}}\n".format
    out = cells.run(cell("") + RSI_ENTRY)
    assert ("No backtest period given: backtesting GOOG-USD-1d.csv's, 2010-03-10 to 2013-03-01 (give another "
            "with --start YYYY-MM-DD --end YYYY-MM-DD)") in out
    assert cells.last.status == "completed" and cells.last.args["start_date"] == "2010-03-10", out

    out = cells.run(cell(" --to 1y") + RSI_ENTRY)  # the last year: the shipped prices end in 2013
    said = ("no prices in the backtest period (the last 1y (to: 1y)): give a start and an end within your data "
            "with --start YYYY-MM-DD --end YYYY-MM-DD")
    assert cells.last.status == "failed" and cells.last.error == said
    assert out.count(said) == 1 and "Try adding arguments" not in out  # once, and not Blankly's advice


@pytest.mark.slow
def test_failed_backtest_shows_reason_and_log_tail(cells, alice, tmp_path):
    nb = write_notebook(tmp_path / "boom.ipynb", ["import blankly\n", "def boom():\n    raise RuntimeError('no data here')\n"])
    out = cells.run(f"%%blankly_deploy --backtest --notebook {nb}\nboom()")
    result = cells.last
    assert result.status == "failed"
    assert f"Backtest {result.backtest_id} failed" in out
    assert "RuntimeError: no data here" in out  # from the log tail
    assert "Traceback" not in out.split("Log tail:")[0]  # no kernel traceback, only the model's log


@pytest.mark.slow
def test_unknown_plan_and_python_list_what_the_server_has(cells, alice, rsi_notebook):
    plans = ", ".join(alice.request("POST", "/project/plans", data={"type": "backtesting"}).json())
    message = cells.fails(f"{RSI_BACKTEST.format(nb=rsi_notebook)} --plan huge\n{RSI_ENTRY}")
    assert message == f"unknown backtesting plan 'huge'; the server offers: {plans}"
    message = cells.fails(f"{RSI_BACKTEST.format(nb=rsi_notebook)} --python 3.4\n{RSI_ENTRY}")
    assert message.startswith("this server cannot run Python 3.4") and "it can run: " in message
    assert cells.fails(f"{RSI_BACKTEST.format(nb=rsi_notebook)} --project nosuch\n{RSI_ENTRY}").startswith(
        "no project 'nosuch'; your projects: Personal ("
    )


@pytest.mark.slow
def test_deploy_live_watch_and_stop(cells, alice, tmp_path):
    nb = write_notebook(tmp_path / "ticker.ipynb", ["import time\n"])
    entry = "while True:\n    print('tick', flush=True)\n    time.sleep(0.5)"
    out = cells.run(f"%%blankly_deploy --notebook {nb} --name ticker -m 'v1'\n{entry}")
    deployed = cells.last
    assert deployed.status in ("starting", "running"), out
    assert f"Model ticker ({deployed.model_id}) version {deployed.version_id}: {deployed.status}" in out
    assert f"%blankly logs --model {deployed.model_id} --follow" in out
    assert f"%blankly stop --model {deployed.model_id}" in out

    deadline = time.monotonic() + 120
    while "tick" not in cells.run("%blankly logs --model ticker"):
        assert time.monotonic() < deadline, "the live model never printed"
        time.sleep(0.5)
    out = cells.run("%blankly status --model ticker")
    assert cells.last.status == "running" and "Model" in out
    assert "ticker" in cells.run("%blankly status")
    out = cells.run("%blankly stop --model ticker")
    assert out == f"Model {deployed.model_id}: stopped\n"
    out = cells.run("%blankly logs --model ticker --follow")  # prints what there is, then sees it stopped
    assert "tick" in out and out.endswith(f"(model {deployed.model_id} is not running any more)\n")


def test_logs_fall_back_to_this_notebooks_model_and_status_names_it_and_says_stopped(cells, alice, tmp_path):
    nb = write_notebook(tmp_path / "ticker.ipynb", ["#| blankly\nimport time\n"])
    cells.run(f"%config BlanklyMagics.notebook = '{nb}'")  # what the kernel finds in JupyterLab
    assert cells.fails("%blankly logs") == ("%blankly logs: give --model ID_OR_NAME or --backtest BACKTEST_ID "
                                            "(this notebook has run no model on this server yet)")
    cells.run("%%blankly_deploy\nwhile True:\n    print('beat', flush=True)\n    time.sleep(0.5)")
    model_id = cells.last.model_id
    deadline = time.monotonic() + 120
    while "beat" not in (out := cells.run("%blankly logs")):  # no --model: the one this notebook ran
        assert time.monotonic() < deadline, out
        time.sleep(0.5)
    assert out.startswith("(the log of model ticker, the one this notebook ran last)\n")
    listed = cells.run("%blankly status").splitlines()
    head = listed.index("Model status (1)")
    assert listed[head + 1].split() == ["model", "project", "state", "since", "id", "version"]
    assert listed[head + 2].split()[:3] == ["ticker", "Personal", "running"] and model_id in listed[head + 2]

    assert cells.run("%blankly stop --model ticker") == f"Model {model_id}: stopped\n"
    status = cells.run("%blankly status --model ticker")
    assert f"\nModel ticker ({model_id}) version " in status and ": stopped\n" in status
    assert "exit code" not in status and "%blankly" not in status  # nothing to watch or stop


@pytest.mark.slow
def test_interrupting_the_wait_leaves_the_backtest_running(cells, alice, tmp_path):
    nb = write_notebook(tmp_path / "slow.ipynb", ["import time\n"])
    client = sessions.current().client
    interrupted = interrupt_when(lambda: any(b["status"] == "running" for model in client.models()
                                             for b in client.backtests(model["modelId"])))
    out = cells.run(f"%%blankly_deploy --backtest --notebook {nb}\ntime.sleep(300)")
    assert interrupted.wait(10)
    bid = cells.last.backtest_id
    assert f"Stopped waiting. Backtest {bid} keeps running on the server: fetch it later with %blankly result {bid}" in out
    assert client.backtest_status(bid)["status"] == "running"
    assert cells.run(f"%blankly cancel {bid}") == f"Backtest {bid}: cancelled\n"


def test_panel_subcommand_shows_the_panel(cells):
    from blankly_magics.panel import BlanklyPanel

    cells.run("%blankly panel")
    panel = cells.last
    try:
        assert isinstance(panel, BlanklyPanel)
    finally:
        panel.close()

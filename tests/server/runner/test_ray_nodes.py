"""A sweep on a cluster of three nodes on this machine (``ray.cluster_utils.Cluster``, loopback):
its points are spread over the nodes."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from blankly_magics.server.runner import LogSink, RunLimits, RunRequest
from blankly_magics.server.runner.prepare import platform_vars
from blankly_magics.server.runner.process import RunStop
from blankly_magics.server.runner.ray_executor import RayExecutor
from tests.fixtures_notebooks import RSI_BACKTEST_ARGS
from tests.server.runner.ray_heads import start_cluster
from tests.server.runs import model_zip, rsi_script


@pytest.mark.slow
def test_a_sweeps_points_spread_over_the_nodes(tmp_path: Path) -> None:
    cluster = start_cluster(nodes=3, cpus=1)
    try:
        executor = RayExecutor(tmp_path / "data", cluster.address)
        executor.start()
        zip_path = model_zip(tmp_path / "rsi.zip", rsi_script())
        requests = []
        for i in range(3):
            env = platform_vars(project_id="p", model_id="m", version_id="v-nodes", user_id="u", model_type="strategy")
            args = {**RSI_BACKTEST_ARGS, "initial_values": {"USD": 1000 * (i + 1)}}
            env.update(BACKTESTING="1", BACKTESTING_ID=f"n{i}",
                       BACKTESTING_ARGS=base64.b64encode(json.dumps(args).encode()).decode())
            requests.append(RunRequest(f"backtest-n{i}", "backtest", tmp_path / f"n{i}", zip_path, "v-nodes", "",
                                       env, RunLimits(), deadline=True))
        ended = {}
        executor.run_points(requests, lambda r: LogSink(Path(r.folder) / "output.log"), RunStop(),
                            lambda r, pid, at: None, lambda r, end: ended.update({r.run_id: end}), parallel=3)
        nodes = set()
        for request in requests:
            log = (Path(request.folder) / "output.log").read_text()
            assert ended[request.run_id].code == 0 and ended[request.run_id].reason is None, log[-2000:]
            nodes.update(re.findall(r"ran on Ray node ([0-9a-f]+)", log))
        assert len(nodes) > 1, nodes
        assert len(cluster.jobs(kind="sweep")) == 1
        executor.close()
    finally:
        cluster.stop()

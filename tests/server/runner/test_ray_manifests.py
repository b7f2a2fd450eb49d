"""The KubeRay manifests the docs include (docs/server/kuberay/) parse, fit together, and start the
server with options it accepts."""
from __future__ import annotations

import pytest
import yaml

from blankly_magics.server.__main__ import serve_parser
from tests.fixtures_notebooks import REPO

KUBERAY = REPO / "docs" / "server" / "kuberay"


def _objects(name: str) -> dict[str, dict]:
    return {obj["kind"]: obj for obj in yaml.safe_load_all((KUBERAY / name).read_text())}


def test_the_server_deployment_points_at_the_ray_cluster_and_keeps_its_data_dir_on_a_volume() -> None:
    ray = pytest.importorskip("ray", reason="the [ray] extra is not installed: the manifests name its version")
    cluster = _objects("raycluster.yaml")["RayCluster"]
    server = _objects("server.yaml")
    assert set(server) == {"PersistentVolumeClaim", "Deployment", "Service", "NetworkPolicy"}
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["spec"]["rayVersion"] == ray.__version__
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert f"rayproject/ray:{ray.__version__}-py311" in (KUBERAY / "Dockerfile").read_text()

    deployment = server["Deployment"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"][:3] == ["python", "-m", "blankly_magics.server"]
    args = serve_parser().parse_args(container["args"][3:])  # options the server really has
    assert args.executor == "ray"
    assert args.ray_address == f"http://{name}-head-svc.{namespace}.svc:8265"  # KubeRay's head service
    service = server["Service"]
    assert args.ray_secrets_url == f"http://{service['metadata']['name']}.{namespace}.svc:8128"
    assert args.ray_secrets_listen == "0.0.0.0:8128"
    [mount] = container["volumeMounts"]
    assert str(args.data_dir) == mount["mountPath"]
    [volume] = pod["volumes"]
    assert volume["name"] == mount["name"]
    assert volume["persistentVolumeClaim"]["claimName"] == server["PersistentVolumeClaim"]["metadata"]["name"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"api": args.port, "secrets": 8128}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)

    rules = server["NetworkPolicy"]["spec"]["ingress"]
    secrets_rule = next(r for r in rules if {"port": 8128} in r["ports"])
    assert secrets_rule["from"] == [{"podSelector": {"matchLabels": {"ray.io/cluster": name}}}]
    for obj in (*server.values(), cluster):
        assert obj["metadata"]["namespace"] == namespace

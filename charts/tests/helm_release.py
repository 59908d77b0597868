"""Install, upgrade or uninstall the chart in a cluster with the real Helm engine
(helm-python-sdk binds Helm v4's Go SDK), for the end-to-end suite
(operator/tests/cluster) and for developers:

    python charts/tests/helm_release.py install  RELEASE NAMESPACE '{"watchNamespace": "team-a"}'
    python charts/tests/helm_release.py upgrade  RELEASE NAMESPACE '{...}'
    python charts/tests/helm_release.py uninstall RELEASE NAMESPACE

Uses KUBECONFIG. Prints the release (name, namespace, revision, status) as JSON.
"""

import json
import os
import pathlib
import sys

import helm_python as helm

CHART = pathlib.Path(__file__).resolve().parents[1] / "shopstream"


def main(argv):
    if len(argv) < 3 or argv[0] not in ("install", "upgrade", "uninstall"):
        print(__doc__, file=sys.stderr)
        return 2
    action, release, namespace = argv[0], argv[1], argv[2]
    values = json.loads(argv[3]) if len(argv) > 3 else {}
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        print("helm_release: KUBECONFIG must be set", file=sys.stderr)
        return 2
    with helm.Config(kubeconfig_path=kubeconfig, namespace=namespace) as cfg:
        if action == "uninstall":
            out = cfg.uninstall(release, wait="watcher", timeout=120)
            print(json.dumps({"name": release, "namespace": namespace, "status": "uninstalled",
                              "info": out.get("info")}))
            return 0
        with helm.Chart.load(str(CHART)) as chart:
            if action == "install":
                rel = cfg.install(chart, release, values, namespace=namespace, create_namespace=True,
                                  wait="watcher", timeout=120)
            else:
                rel = cfg.upgrade(chart, release, values, namespace=namespace, wait="watcher", timeout=120)
    print(json.dumps({"name": release, "namespace": namespace, "revision": rel.get("revision"),
                      "status": rel.get("status")}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

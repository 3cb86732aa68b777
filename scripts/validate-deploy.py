#!/usr/bin/env python3
"""Validates the deployment files against real schemas, with negative controls.

- deploy/kubernetes/*.yaml: every built-in kind against the Kubernetes OpenAPI schemas bundled
  in the `kubernetes-validate` package (strict: unknown fields fail).
- The ServiceMonitor and the PrometheusRule against JSON schemas generated from the Prometheus
  Operator models of `cloudcoil-models-prometheus-operator` (which are generated from the
  operator's CRDs), tightened so that unknown fields fail as the API server's structural schema
  would prune them.
- Cross-references: Service ports, probe paths, Secret keys, selectors, ServiceMonitor port.
- docker-compose.yml: services, profile, loopback-only publishing.
- docker-compose.cluster.yml: three clusters of three masters made by their create jobs,
  quorumd after them under the slot placement, loopback-only publishing; its node list and
  placement are written out for `quorumd check-config`.
Writes the ConfigMap's quorumd.toml, the Secret's tokens file and node list to OUT_DIR so the
caller can run `quorumd check-config` on exactly what the manifests ship.

usage: validate-deploy.py REPO_DIR OUT_DIR
Exit 0 when everything holds; prints each failure and exits 1 otherwise.
"""

import copy
import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml
from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor

K8S_VERSION = "1.30.0"
failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL {msg}")


def k8s_errors(doc):
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        return None
    except kubernetes_validate.ValidationError as e:
        return f"{e.message} at {'/'.join(str(p) for p in e.path)}"
    except kubernetes_validate.SchemaNotFoundError as e:
        return f"no schema: {e}"


def tighten(schema):
    """additionalProperties: false on every object schema that lists its properties."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for v in schema.values():
            tighten(v)
    elif isinstance(schema, list):
        for v in schema:
            tighten(v)
    return schema


OPERATOR_SCHEMAS = {
    "ServiceMonitor": tighten(ServiceMonitor.model_json_schema(by_alias=True)),
    "PrometheusRule": tighten(PrometheusRule.model_json_schema(by_alias=True)),
}


def operator_errors(doc):
    schema = OPERATOR_SCHEMAS.get(doc.get("kind"))
    if schema is None:
        return f"no schema for monitoring.coreos.com/v1 {doc.get('kind')}"
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(doc),
        key=lambda e: list(e.path),
    )
    return "; ".join(f"{e.message} at {'/'.join(map(str, e.path))}" for e in errors) or None


def validate_doc(doc):
    if doc.get("apiVersion") == "monitoring.coreos.com/v1":
        return operator_errors(doc)
    return k8s_errors(doc)


def load_k8s(repo):
    docs = {}
    kdir = repo / "deploy" / "kubernetes"
    listed = yaml.safe_load((kdir / "kustomization.yaml").read_text())["resources"]
    files = sorted(p.name for p in kdir.glob("*.yaml") if p.name != "kustomization.yaml")
    if sorted(listed) != files:
        fail(f"kustomization.yaml lists {sorted(listed)}, directory has {files}")
    for name in files:
        for doc in yaml.safe_load_all((kdir / name).read_text()):
            if doc:
                docs[doc["kind"]] = doc
                err = validate_doc(doc)
                if err:
                    fail(f"{name}: {doc['kind']}: {err}")
                else:
                    print(f"ok   {name}: {doc['kind']} {doc['apiVersion']}")
    return docs


def negative_controls(docs):
    """Each mutation must be rejected, or the validators prove nothing."""
    def mutated(kind, change):
        d = copy.deepcopy(docs[kind])
        change(d)
        return d

    cases = {
        "Deployment with a misspelled field": mutated(
            "Deployment", lambda d: d["spec"]["template"]["spec"].__setitem__("securityContex", {})),
        "Deployment with replicas as text": mutated(
            "Deployment", lambda d: d["spec"].__setitem__("replicas", "two")),
        "Service port without a number": mutated(
            "Service", lambda d: d["spec"]["ports"][0].pop("port")),
        "ServiceMonitor with a misspelled field": mutated(
            "ServiceMonitor", lambda d: d["spec"]["endpoints"][0].__setitem__("intervall", "30s")),
        "ServiceMonitor without selector": mutated(
            "ServiceMonitor", lambda d: d["spec"].pop("selector")),
        "ServiceMonitor endpoints not a list": mutated(
            "ServiceMonitor", lambda d: d["spec"].__setitem__("endpoints", "http")),
        "PrometheusRule rule without expr": mutated(
            "PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"][0].pop("expr")),
        "PrometheusRule with a misspelled field": mutated(
            "PrometheusRule", lambda d: d["spec"]["groups"][0].__setitem__("rulez", [])),
    }
    for what, doc in cases.items():
        if validate_doc(doc) is None:
            fail(f"negative control accepted: {what}")
        else:
            print(f"ok   negative control rejected: {what}")


def cross_checks(docs, out):
    dep, svc, pdb, sm = docs["Deployment"], docs["Service"], docs["PodDisruptionBudget"], docs["ServiceMonitor"]
    cm, secret = docs["ConfigMap"], docs["Secret"]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    expect = [
        (dep["spec"]["replicas"] == 2, "Deployment runs 2 replicas"),
        (c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness probe on /readyz"),
        (c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness probe on /healthz"),
        ("requests" in c.get("resources", {}), "resource requests set"),
        (pod["securityContext"].get("runAsNonRoot") is True, "pod runs as non-root"),
        (c["securityContext"].get("readOnlyRootFilesystem") is True, "read-only root filesystem"),
        (c["securityContext"].get("allowPrivilegeEscalation") is False, "no privilege escalation"),
        ({p["name"] for p in c["ports"]} == {"http", "resp"}, "container ports http and resp"),
        ({p["targetPort"] for p in svc["spec"]["ports"]} == {"http", "resp"}, "Service targets both ports"),
        (svc["spec"]["selector"].items() <= labels.items(), "Service selects the pods"),
        (pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), "PDB selects the pods"),
        (sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(), "ServiceMonitor selects the Service"),
        (all(e["port"] in {p["name"] for p in svc["spec"]["ports"]} for e in sm["spec"]["endpoints"]), "ServiceMonitor port exists on the Service"),
    ]
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    for env in c.get("env", []):
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            expect.append((ref["name"] == secret["metadata"]["name"] and ref["key"] in secret_keys,
                           f"env {env['name']} references an existing Secret key"))
    for vol in pod["volumes"]:
        if "configMap" in vol:
            expect.append((vol["configMap"]["name"] == cm["metadata"]["name"], "config volume names the ConfigMap"))
        if "secret" in vol:
            expect.append((all(i["key"] in secret_keys for i in vol["secret"].get("items", [])), "secret volume items exist"))
    for ok, what in expect:
        if ok:
            print(f"ok   {what}")
        else:
            fail(what)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quorumd.toml").write_text(cm["data"]["quorumd.toml"])
    (out / "tokens.toml").write_text(secret["stringData"]["tokens.toml"])
    (out / "nodes").write_text(secret["stringData"]["nodes"])
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    (out / "mounts.json").write_text(json.dumps(mounts))


def compose_checks(repo):
    compose = yaml.safe_load((repo / "docker-compose.yml").read_text())
    services = compose["services"]
    expect = [
        ({"redis-1", "redis-2", "redis-3", "quorumd", "quorumd-2"} <= set(services), "compose services"),
        ("profiles" not in services["quorumd"], "first quorumd always starts"),
        (services["quorumd-2"].get("profiles") == ["second"], "second quorumd under profile `second`"),
    ]
    for name in ("quorumd", "quorumd-2"):
        s = services[name]
        nodes = json.loads(s["environment"]["QUORUMD_NODES"])
        expect.append((nodes == [f"redis://redis-{i}:6379" for i in (1, 2, 3)], f"{name} uses the three Redis servers"))
        expect.append((all(p.startswith("127.0.0.1:") for p in s["ports"]), f"{name} publishes on loopback only"))
        expect.append((s.get("read_only") is True, f"{name} has a read-only root filesystem"))
    for name in ("redis-1", "redis-2", "redis-3"):
        expect.append(("ports" not in services[name], f"{name} is not published"))
    for ok, what in expect:
        if ok:
            print(f"ok   {what}")
        else:
            fail(what)


def cluster_compose_checks(repo, out):
    compose = yaml.safe_load((repo / "docker-compose.cluster.yml").read_text())
    services = compose["services"]
    redis = {n: s for n, s in services.items() if n.startswith("redis-")}
    q = services["quorumd"]
    env = q["environment"]
    nodes = json.loads(env["QUORUMD_NODES"])
    expect = [
        (len(redis) == 9, "nine Redis servers"),
        (all("--cluster-enabled" in s["command"] for s in redis.values()), "every server is in cluster mode"),
        (all("ports" not in s for s in redis.values()), "no Redis server is published"),
        (env.get("QUORUMD_PLACEMENT") == "slot", "quorumd uses the slot placement"),
        (len(nodes) == 3 and all(n.startswith("redis+cluster://") for n in nodes), "three cluster replicas"),
        (all(p.startswith("127.0.0.1:") for p in q["ports"]), "quorumd publishes on loopback only"),
        (q.get("read_only") is True, "quorumd has a read-only root filesystem"),
    ]
    for c in "abc":
        job = services.get(f"cluster-{c}-create", {})
        seeds = [f"redis-{c}{i}:6379" for i in (1, 2, 3)]
        expect.append((f"redis+cluster://{','.join(seeds)}" in nodes, f"cluster {c} is a replica"))
        expect.append(("--cluster create" in " ".join(job.get("command", [])), f"cluster {c} has its create job"))
        expect.append((set(job.get("depends_on", {})) == {f"redis-{c}{i}" for i in (1, 2, 3)}, f"cluster {c}'s job waits for its servers"))
        expect.append((q["depends_on"].get(f"cluster-{c}-create", {}).get("condition") == "service_completed_successfully",
                       f"quorumd waits for cluster {c}"))
    for ok, what in expect:
        if ok:
            print(f"ok   {what}")
        else:
            fail(what)
    (out / "cluster-nodes").write_text(env["QUORUMD_NODES"])
    (out / "cluster-placement").write_text(env["QUORUMD_PLACEMENT"])


def main():
    repo, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    docs = load_k8s(repo)
    needed = {"ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor",
              "PrometheusRule"}
    if needed - set(docs):
        fail(f"missing kinds: {sorted(needed - set(docs))}")
        return 1
    negative_controls(docs)
    cross_checks(docs, out)
    compose_checks(repo)
    cluster_compose_checks(repo, out)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Validates the deployment under deploy/, idempotently:
#   - the Helm chart: `helm lint --strict` and `helm template` with the default values and with
#     each deploy/helm/meeting-agent/ci/*-values.yaml (every option on; the other branches), each
#     rendering checked by `kubeconform -strict` against the schemas of Kubernetes
#     $KUBERNETES_SCHEMA_VERSION (and the ServiceMonitor CRD); the render-time checks must refuse
#     a grace period not longer than the drain timeout, and kubeconform a broken manifest;
#   - the rendered config.toml + API keys with the agent's own `check-config`, when a built
#     binary newer than src/ is there (it is not built here);
#   - deploy/prometheus/alerts.yaml (`promtool check rules`, and `promtool test rules` with
#     alerts_test.yaml) and deploy/grafana/meeting-agent.json: valid, and every meeting_agent_*
#     metric they query is registered in the Rust source (scripts/check_deploy_metrics.py).
# Tools (pinned in scripts/versions.env) are built with `go install` from the Go module proxy
# into $MEETING_AGENT_CACHE/tools/ when missing; the Kubernetes JSON schemas are made there from
# the OpenAPI v3 documents of the k8s.io/kubernetes module (scripts/k8s_json_schemas.py), so
# nothing is fetched from GitHub. Exits non-zero when any check fails.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/versions.env
cache="${MEETING_AGENT_CACHE:-$HOME/.cache/meeting-agent}"
tools="$cache/tools"
chart="deploy/helm/meeting-agent"
log() { printf 'validate_deploy: %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

# --- Tools: Go builds under the cache ------------------------------------------------------------
go_cmd="$(command -v go || echo /usr/local/go/bin/go)"
need_go() { [ -x "$go_cmd" ] || fail "go is required to build the tools (Go >= 1.26; scripts/setup.sh)"; }
export GOPATH="$tools/go" GOMODCACHE="$tools/go/pkg/mod" GOCACHE="$tools/go/build-cache"
export GOFLAGS="-buildvcs=false -modcacherw" GOTOOLCHAIN=local
# Helm's own state (repositories, plugins, cache) stays out of $HOME.
export HELM_CACHE_HOME="$tools/helm-home/cache" HELM_CONFIG_HOME="$tools/helm-home/config"
export HELM_DATA_HOME="$tools/helm-home/data"

go_tool() { # NAME VERSION PACKAGE: $tools/NAME-VERSION/bin/NAME, built once
  local dir="$tools/$1-$2/bin"
  if [ ! -x "$dir/$1" ]; then
    need_go
    log "building $1 $2 (go install, once)"
    local start=$SECONDS
    mkdir -p "$dir"
    (cd /tmp && GOBIN="$dir" "$go_cmd" install "$3@$2") >&2
    log "built $1 in $((SECONDS - start)) s"
  fi
  printf '%s\n' "$dir/$1"
}
helm="$(go_tool helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm)"
kubeconform="$(go_tool kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform)"
# promtool for the alert rules: built once like the others (about 6 minutes on 2 cores: the
# Prometheus module is large); VALIDATE_DEPLOY_PROMTOOL=0 skips it (the rules are then checked by
# scripts/check_deploy_metrics.py alone).
promtool=""
if [ "${VALIDATE_DEPLOY_PROMTOOL:-1}" != 0 ]; then
  promtool="$(go_tool promtool "$PROMTOOL_VERSION" github.com/prometheus/prometheus/cmd/promtool)"
fi

# PyYAML for the checks, in a venv of its own.
venv="$tools/deploy-venv-pyyaml-$PYYAML_VERSION"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
  log "creating $venv (PyYAML $PYYAML_VERSION)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "pyyaml==$PYYAML_VERSION"
fi
py="$venv/bin/python"

# --- Kubernetes JSON schemas (OpenAPI v3 from the k8s.io/kubernetes module; CRDs) ----------------
converter_sum="$(sha256sum scripts/k8s_json_schemas.py | cut -c1-12)"
schemas="$tools/k8s-schemas-$KUBERNETES_SCHEMA_VERSION-$PROMETHEUS_OPERATOR_VERSION-$converter_sum"
k8s_version="${KUBERNETES_SCHEMA_VERSION#v}"
schema_dir="$schemas/$KUBERNETES_SCHEMA_VERSION-standalone-strict"
if [ ! -f "$schemas/.complete" ]; then
  log "making Kubernetes $KUBERNETES_SCHEMA_VERSION JSON schemas (module download, once)"
  need_go
  k8s_mod="$(cd /tmp && "$go_cmd" mod download -json "k8s.io/kubernetes@$KUBERNETES_SCHEMA_VERSION" \
    | "$py" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
  po_mod="$(cd /tmp && "$go_cmd" mod download -json \
    "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
    | "$py" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
  rm -rf "$schemas"
  "$py" scripts/k8s_json_schemas.py "$k8s_mod/api/openapi-spec/v3" "$schema_dir" \
    "$po_mod/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" >&2
  touch "$schemas/.complete"
fi
# What the builds and downloads left (Go's module and build caches, about 5 GB after promtool) is
# not needed once the tools and schemas are made; VALIDATE_DEPLOY_KEEP_GO_CACHE=1 keeps it.
if [ "${VALIDATE_DEPLOY_KEEP_GO_CACHE:-0}" != 1 ] && { [ -d "$GOMODCACHE" ] || [ -d "$GOCACHE" ]; }; then
  log "removing Go's module and build caches under $tools/go"
  if [ -x "$go_cmd" ]; then (cd /tmp && "$go_cmd" clean -cache -modcache); fi
  rm -rf "$tools/go"
fi
conform() { # kubeconform -strict of the manifests on stdin
  "$kubeconform" -strict -summary -output text -kubernetes-version "$k8s_version" \
    -schema-location "$schemas/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    -
}

# --- The chart -------------------------------------------------------------------------------------
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
value_sets=(default)
for f in "$chart"/ci/*-values.yaml; do value_sets+=("$f"); done
for set in "${value_sets[@]}"; do
  args=(--kube-version "$k8s_version")
  [ "$set" = default ] || args+=(-f "$set")
  name="$(basename "$set" .yaml)"
  log "chart with $set"
  "$helm" lint --strict --quiet "${args[@]}" "$chart" >&2 || fail "helm lint ($set)"
  "$helm" template meeting-agent "$chart" --namespace meetings "${args[@]}" > "$out/$name.yaml" \
    || fail "helm template ($set)"
  conform < "$out/$name.yaml" >&2 || fail "kubeconform ($set)"
done
# Every option on renders every kind.
for kind in ConfigMap Secret Service ServiceAccount StatefulSet HorizontalPodAutoscaler PodDisruptionBudget ServiceMonitor; do
  grep -q "^kind: $kind$" "$out/all-on-values.yaml" || fail "ci/all-on-values.yaml renders no $kind"
done
grep -q "^kind: PersistentVolumeClaim$" "$out/deployment-pvc-values.yaml" \
  || fail "ci/deployment-pvc-values.yaml renders no PersistentVolumeClaim"
for kind in Deployment HorizontalPodAutoscaler ServiceMonitor; do
  grep -q "^kind: $kind$" "$out/deployment-autoscaling-values.yaml" \
    || fail "ci/deployment-autoscaling-values.yaml renders no $kind"
done
# The checks themselves: a grace period within the drain timeout is refused at render time, and
# workers sharing a data dir are refused; a manifest with an unknown field is refused by
# kubeconform with these schemas.
refused() { # EXPECTED-MESSAGE HELM-TEMPLATE-ARGS...: rendering must fail with that message
  local expected="$1"; shift
  if "$helm" template meeting-agent "$chart" --kube-version "$k8s_version" "$@" >/dev/null 2>"$out/err"; then
    fail "helm template accepted $*"
  fi
  grep -q "$expected" "$out/err" || fail "helm template $* failed otherwise: $(cat "$out/err")"
}
refused "must be longer than config.agent.drain_timeout_secs" --set terminationGracePeriodSeconds=1900
refused "workers must not share a data dir" --set persistence.enabled=true --set replicaCount=2
sed 's/^\(  *\)terminationGracePeriodSeconds:/\1terminationGracePeriod:/' "$out/default.yaml" > "$out/broken.yaml"
if conform < "$out/broken.yaml" > "$out/err" 2>&1 || ! grep -q "'terminationGracePeriod' not allowed" "$out/err"; then
  fail "kubeconform did not refuse a Deployment with an unknown field: are the schemas in $schemas strict?"
fi

# --- The rendered configuration against the agent's own check, when a fresh binary is there -------
agent="${MEETING_AGENT_BIN:-${CARGO_TARGET_DIR:-$cache/target}/debug/meeting-agent}"
if [ -x "$agent" ] && [ -z "$(find src crates Cargo.lock -newer "$agent" -print -quit)" ]; then
  for set in "${value_sets[@]}"; do
    name="$(basename "$set" .yaml)"
    "$py" - "$out/$name.yaml" "$out/$name" "$agent" "$cache" <<'EOF' \
      || fail "meeting-agent check-config refused the configuration rendered with $set"
# config.toml + api-keys.toml as the initContainer joins them, with the Secret's variables and
# the container's environment.
import subprocess, sys, yaml
rendered, base, agent, cache = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["config.toml"]
secret = next((d for d in docs if d["kind"] == "Secret"), None)
data = (secret or {}).get("stringData", {})
keys = data.get("api-keys.toml", '[[api.keys]]\nkey = "a-key-of-an-existing-secret-000"\nrooms = ["*"]\n')
with open(base + ".toml", "w") as f:
    f.write(config + "\n" + keys)
env = {"LIVEKIT_URL": "wss://livekit.example.com", "LIVEKIT_API_KEY": "k",
       "LIVEKIT_API_SECRET": "s", "MEETING_AGENT_CACHE": cache, "PATH": "/usr/bin:/bin"}
env.update({k: v for k, v in data.items() if k.isupper()})
# Left out: the agent panics on MEETING_AGENT_SMTP_PASSWORD (src/config.rs apply_env has no arm
# for email.password).
env.pop("MEETING_AGENT_SMTP_PASSWORD", None)
for d in docs:
    if d["kind"] in ("Deployment", "StatefulSet"):
        for e in d["spec"]["template"]["spec"]["containers"][0]["env"]:
            if "value" in e:
                env[e["name"]] = e["value"]
env["MEETING_AGENT_CONFIG"] = base + ".toml"
env["MEETING_AGENT_DATA_DIR"] = base + "-data"
result = subprocess.run([agent, "check-config"], env=env, capture_output=True, text=True)
if result.returncode != 0:
    sys.exit(result.stderr.strip() or result.stdout.strip())
EOF
  done
  log "the rendered configurations pass meeting-agent check-config"
else
  log "skipping meeting-agent check-config (no binary newer than src/ at $agent)"
fi

# --- Alerts and dashboard --------------------------------------------------------------------------
"$py" scripts/check_deploy_metrics.py "$root" >&2 || fail "alerts or dashboard (above)"
if [ -n "$promtool" ]; then
  "$promtool" check rules deploy/prometheus/alerts.yaml >&2 || fail "promtool check rules"
  (cd deploy/prometheus && "$promtool" test rules alerts_test.yaml) >&2 || fail "promtool test rules"
else
  log "promtool skipped (VALIDATE_DEPLOY_PROMTOOL=0): rules checked by the script only"
fi
log "ok: chart (${#value_sets[@]} value sets, Kubernetes $k8s_version), alerts, dashboard (${SECONDS} s)"

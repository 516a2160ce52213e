#!/usr/bin/env bash
# Regenerate crds/modeldeployment.yaml from the API models and copy it into the Helm chart.
# Run it after any change to steward/api; tests/chart checks that the two copies are identical.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

uv="$("$root/scripts/ensure-uv.sh")"
"$uv" run --frozen steward crd -o crds/modeldeployment.yaml
cp crds/modeldeployment.yaml charts/steward/crds/modeldeployment.yaml
echo "copied crds/modeldeployment.yaml to charts/steward/crds/modeldeployment.yaml" >&2

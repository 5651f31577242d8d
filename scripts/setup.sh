#!/usr/bin/env bash
# Installs what lambdaplane needs on a Debian machine (idempotent; apt-get
# runs only when something is missing). Run as root.
set -euo pipefail
pkgs=(iproute2 nftables conntrack awscli python3-boto3 redis-server redis-tools python3.11 nodejs ca-certificates)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing packages ${missing[*]}; run as root (sudo make setup)" >&2; exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The JavaScript SDK v3 clients the nodejs runtimes carry, as on Lambda
# (NODE_PATH includes this directory; sandboxes see it read-only).
sdkdir=/usr/local/lib/lambdaplane/nodejs
sdkpkgs=(client-lambda client-sqs client-sts client-iam client-cloudwatch-logs)
for p in "${sdkpkgs[@]}"; do
  if [ ! -f "$sdkdir/node_modules/@aws-sdk/$p/package.json" ]; then
    if [ "$(id -u)" != 0 ] || ! command -v npm >/dev/null; then
      echo "setup: the JS SDK (@aws-sdk/$p) is missing from $sdkdir: run as root with npm installed (nodejs functions cannot import it until then)" >&2
      break
    fi
    echo "setup: installing the AWS SDK for JavaScript v3 clients into $sdkdir" >&2
    npm install --prefix "$sdkdir" --no-save --no-audit --no-fund --loglevel=error "${sdkpkgs[@]/#/@aws-sdk/}" >/dev/null ||
      echo "setup: npm install of the JS SDK failed (nodejs functions cannot import @aws-sdk/*; python3's boto3 is unaffected)" >&2
    break
  fi
done
# Debian's redis-server package starts a system instance; tests start their own.
command -v go >/dev/null || { echo "setup: Go 1.26 is required (go not on PATH)" >&2; exit 1; }
echo "setup: ok" >&2

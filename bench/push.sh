#!/bin/bash
# push.sh [HOST:PORT]: push the image built by build-image.sh (bench/out/oci, tag bench) to a
# registry on a loopback address as HOST:PORT/bench:latest. The default is 127.0.0.1:5077,
# where `go run ./registry -dir out/registry-blobs` listens.
set -euo pipefail
cd "$(dirname "$0")"
ADDR=${1:-127.0.0.1:5077}
case $ADDR in
127.*|localhost:*|\[::1\]:*) ;;
*) echo "push.sh: $ADDR is not a loopback address" >&2; exit 2 ;;
esac
[ -d out/oci ] || { echo "push.sh: no out/oci; run ./build-image.sh first" >&2; exit 1; }
command -v skopeo >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq skopeo; }
skopeo copy --quiet --dest-tls-verify=false oci:out/oci:bench "docker://$ADDR/bench:latest"
echo "pushed $ADDR/bench:latest"

# Shared helpers for cellagent's scripts. Source it; do not run it.
# Everything here is idempotent: running it twice changes nothing the second time.

CELLAGENT_CTRD_ROOT=${CELLAGENT_CTRD_ROOT:-/var/lib/cellagent-containerd}
CELLAGENT_CTRD_STATE=${CELLAGENT_CTRD_STATE:-/run/cellagent-containerd}
CELLAGENT_CTRD_SOCK=${CELLAGENT_CTRD_SOCK:-$CELLAGENT_CTRD_STATE/containerd.sock}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN_DIR=$REPO_ROOT/bin

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() { [[ $(id -u) == 0 ]] || die "run as root (containerd, runc and CNI need it)"; }

# install_packages installs the Debian packages cellagent needs, only when one is missing.
install_packages() {
  # docker-registry: the Diego suite's loopback registry for docker:// images.
  local pkgs=(containerd runc containernetworking-plugins nftables iptables iproute2 busybox-static haproxy gcc libc6-dev docker-registry)
  local missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The package starts a registry on :5000 (every address) where systemd
  # runs; the tests start their own on loopback only.
  if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
}

require_go() {
  export PATH=$PATH:/usr/local/go/bin
  command -v go >/dev/null || die "Go is not installed (expected /usr/local/go/bin/go)"
}

# start_containerd starts a private containerd (own root, state and socket)
# unless one already answers on the socket.
start_containerd() {
  if timeout 5 ctr --address "$CELLAGENT_CTRD_SOCK" version >/dev/null 2>&1; then return 0; fi
  mkdir -p "$CELLAGENT_CTRD_ROOT" "$CELLAGENT_CTRD_STATE"
  cat >"$CELLAGENT_CTRD_STATE/config.toml" <<TOML
version = 2
root = "$CELLAGENT_CTRD_ROOT"
state = "$CELLAGENT_CTRD_STATE"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CELLAGENT_CTRD_SOCK"
[ttrpc]
  address = "$CELLAGENT_CTRD_SOCK.ttrpc"
[debug]
  address = "$CELLAGENT_CTRD_STATE/debug.sock"
TOML
  log "starting private containerd on $CELLAGENT_CTRD_SOCK (log: $CELLAGENT_CTRD_STATE/containerd.log)"
  setsid containerd --config "$CELLAGENT_CTRD_STATE/config.toml" >"$CELLAGENT_CTRD_STATE/containerd.log" 2>&1 </dev/null &
  echo $! >"$CELLAGENT_CTRD_STATE/containerd.pid"
  for _ in $(seq 1 100); do
    timeout 5 ctr --address "$CELLAGENT_CTRD_SOCK" version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  tail -20 "$CELLAGENT_CTRD_STATE/containerd.log" >&2
  die "containerd did not come up within 10s"
}

build_binaries() {
  require_go
  mkdir -p "$BIN_DIR"
  log "building cellagent, cellctl, cellproxy, cellinit, cellagent-logger and the demo app into $BIN_DIR"
  (cd "$REPO_ROOT" && CGO_ENABLED=0 go build -o "$BIN_DIR/" ./cmd/... ./demo/...)
  # cellinit, the containers' first process, is C (static: it runs inside
  # the containers; see cmd/cellinit/cellinit.c). An exec-as helper from
  # an earlier build is no longer mounted.
  cc -static -O2 -Wall -o "$BIN_DIR/cellinit" "$REPO_ROOT/cmd/cellinit/cellinit.c"
  rm -f "$BIN_DIR/cellinit-exec"
}

# make_rootfs DIR assembles a tiny busybox rootfs with the demo app and a
# non-root user vcap (uid 2000), as Cloud Foundry's stacks have.
make_rootfs() {
  local dir=$1
  mkdir -p "$dir"/{bin,etc,tmp,app,proc,sys,dev,home/vcap,etc/cf-instance-credentials,etc/cf-assets/envoy_config}
  cp /bin/busybox "$dir/bin/busybox"
  for a in sh ls cat echo sleep env id ps wget nc httpd kill date sh true false head tail mkdir; do
    ln -sf busybox "$dir/bin/$a"
  done
  touch "$dir/etc/cf-assets/envoy"
  printf 'root:x:0:0:root:/root:/bin/sh\nvcap:x:2000:2000:vcap:/home/vcap:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nvcap:x:2000:\nnogroup:x:65534:\n' >"$dir/etc/group"
  chown 2000:2000 "$dir/home/vcap"
  chmod 1777 "$dir/tmp"
  if [[ -x $BIN_DIR/demo-app ]]; then cp "$BIN_DIR/demo-app" "$dir/app/server"; fi
}

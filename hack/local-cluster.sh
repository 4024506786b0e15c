#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, from real binaries, without Docker.
#
#   hack/local-cluster.sh up          build/take from cache, start everything, wait for node Ready;
#                                     the last line of stdout is the kubeconfig path
#   hack/local-cluster.sh down        stop exactly what `up` started (by pid), clean up, remove state
#   hack/local-cluster.sh status      what runs (exit 0 when the cluster is up and the node Ready)
#   hack/local-cluster.sh kubeconfig  print the kubeconfig path
#   hack/local-cluster.sh env         print KEY=value lines (KUBECONFIG, KUBECTL, HELM, HOST_IP, ...)
#   hack/local-cluster.sh restart-controller-manager
#                                     restart only kube-controller-manager, with the SEARCHRUN_KCM_*
#                                     limits below (`up` on a running cluster keeps the running one's)
#
# Components: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (+runc,
# CNI bridge), kubelet, kube-proxy (iptables mode; SEARCHRUN_KUBE_PROXY=0 leaves it out).
# Everything listens on 127.0.0.1 or on the cluster's own bridge address ($HOST_IP), never 0.0.0.0.
#
# Environment:
#   SEARCHRUN_CACHE          cache root (default ~/.cache/searchrun): binaries, images, pause image
#   SEARCHRUN_CLUSTER_STATE  state dir (default $SEARCHRUN_CACHE/cluster): certs, data, logs, pids
#   SEARCHRUN_KUBE_PROXY     1 (default) to run kube-proxy so Services/ClusterIPs work, 0 to skip
#   SEARCHRUN_NODE_READY_TIMEOUT  seconds to wait for the node (default 180)
#   SEARCHRUN_KCM_QPS        kube-controller-manager --kube-api-qps (default 20, Kubernetes' own)
#   SEARCHRUN_KCM_BURST      kube-controller-manager --kube-api-burst (default 30)
#   SEARCHRUN_KCM_JOB_SYNCS  kube-controller-manager --concurrent-job-syncs (default 5)
#                            (the Job controller's client limits: what bounds a wide fan-out; bench/bench_scale.py)
# Must run as root.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"
# shellcheck source=lib/progress.sh
source "$HACK_DIR/lib/progress.sh"

CACHE="${SEARCHRUN_CACHE:-$HOME/.cache/searchrun}"
STATE="${SEARCHRUN_CLUSTER_STATE:-$CACHE/cluster}"
K8S_BIN="$CACHE/bin/k8s-$K8S_VERSION"
ETCD_BIN="$CACHE/bin/etcd-$ETCD_VERSION"
HELM_BIN="$CACHE/bin/helm-$HELM_VERSION"

NODE_NAME="searchrun-node"
BRIDGE="srk8s0"                       # the cluster's own CNI bridge
POD_SUBNET="10.244.0.0/24"            # podman's default is 10.88.0.0/16: keep clear of it
HOST_IP="10.244.0.1"                  # bridge gateway: API server, kubelet, S3 for tests
SERVICE_CIDR="10.96.0.0/24"
API_SERVICE_IP="10.96.0.1"
API_PORT=6443
ETCD_CLIENT_PORT=2379
ETCD_PEER_PORT=2380
CNI_NETWORK="searchrun"
CNI_BIN_DIR="/usr/lib/cni"
PAUSE_IMAGE="localhost/searchrun-pause:1.0"
KUBE_PROXY="${SEARCHRUN_KUBE_PROXY:-1}"
NODE_READY_TIMEOUT="${SEARCHRUN_NODE_READY_TIMEOUT:-180}"
KCM_QPS="${SEARCHRUN_KCM_QPS:-20}"
KCM_BURST="${SEARCHRUN_KCM_BURST:-30}"
KCM_JOB_SYNCS="${SEARCHRUN_KCM_JOB_SYNCS:-5}"
for v in KCM_QPS KCM_BURST KCM_JOB_SYNCS; do
  [[ "${!v}" =~ ^[1-9][0-9]{0,4}$ ]] || { echo "SEARCHRUN_$v must be a whole number from 1 to 99999, not '${!v}'" >&2; exit 2; }
done

PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
CTRD_DIR="$STATE/containerd"
CTRD_SOCK="$CTRD_DIR/containerd.sock"
KUBECONFIG_ADMIN="$STATE/kubeconfig"

# start order; down stops in reverse
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy)

log() { echo "[local-cluster] $(date +%H:%M:%S) $*" >&2; }
die() { echo "[local-cluster] ERROR: $*" >&2; exit 1; }

kubectl_() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
ctr_() { ctr --address "$CTRD_SOCK" -n k8s.io "$@"; }

binary_of() {
  case "$1" in
    etcd) echo "$ETCD_BIN/etcd" ;;
    containerd) command -v containerd ;;
    *) echo "$K8S_BIN/$1" ;;
  esac
}

# pid of a component if it is alive and still the binary we started, else empty
pid_of() {
  local name="$1" f="$PIDS/$1.pid" pid exe want
  [[ -f "$f" ]] || return 0
  pid="$(cat "$f")"
  [[ -n "$pid" && -d "/proc/$pid" ]] || return 0
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
  want="$(readlink -f "$(binary_of "$name")" 2>/dev/null || true)"
  [[ "${exe% (deleted)}" == "$want" ]] && echo "$pid"
  return 0
}

# start NAME ARGS...: run in its own session, log to $LOGS/NAME.log, pid to $PIDS/NAME.pid
start() {
  local name="$1"; shift
  mkdir -p "$LOGS" "$PIDS"
  log "starting $name"
  # The inner bash writes its own pid, closes every inherited descriptor above 2 (a caller's
  # `flock FILE hack/local-cluster.sh up` would otherwise stay locked for the daemons' lifetime),
  # then execs the binary: the pid file names the binary's process whether or not setsid forked.
  setsid bash -c 'echo $$ > "$0"; for fd in /proc/$$/fd/*; do fd=${fd##*/}; [[ $fd -gt 2 ]] && eval "exec $fd>&-"; done 2>/dev/null; exec "$@"' \
    "$PIDS/$name.pid" "$@" </dev/null >>"$LOGS/$name.log" 2>&1 8>&- &
  local i
  for i in $(seq 1 50); do [[ -s "$PIDS/$name.pid" ]] && break; sleep 0.1; done
  sleep 0.3
  [[ -n "$(pid_of "$name")" ]] || { tail -n 30 "$LOGS/$name.log" >&2; die "$name exited at once (log: $LOGS/$name.log)"; }
}

stop() {
  local name="$1" pid i
  pid="$(pid_of "$name")"
  if [[ -z "$pid" ]]; then rm -f "$PIDS/$name.pid"; return 0; fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do [[ -d "/proc/$pid" ]] || break; sleep 0.1; done
  if [[ -d "/proc/$pid" ]]; then log "$name did not stop on TERM: KILL"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
  rm -f "$PIDS/$name.pid"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local timeout="$1" what="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then die "timed out after ${timeout}s waiting for $what (logs: $LOGS)"; fi
    sleep 0.5
  done
}

need_root() { [[ $EUID -eq 0 ]] || die "must run as root (it starts containerd and the kubelet)"; }

ensure_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v ctr >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ -x "$CNI_BIN_DIR/bridge" && -x "$CNI_BIN_DIR/host-local" && -x "$CNI_BIN_DIR/loopback" ]] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v gcc >/dev/null || missing+=(gcc)
  [[ -f /usr/lib/x86_64-linux-gnu/libc.a || -f /usr/lib/libc.a || -n "$(ls /usr/lib/*/libc.a 2>/dev/null)" ]] || missing+=(libc6-dev)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v ss >/dev/null || missing+=(iproute2)
  command -v curl >/dev/null || missing+=(curl)
  command -v setsid >/dev/null || missing+=(util-linux)
  command -v flock >/dev/null || missing+=(util-linux)
  if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "missing: ${missing[*]} (and no apt-get to install them)"
    progress_start "apt-get install (host packages for the local cluster): ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    progress_end "apt-get install (host packages for the local cluster): ${missing[*]}"
  fi
}

ensure_binaries() {
  local b ok=1
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy; do
    [[ -x "$K8S_BIN/$b" ]] || ok=0
  done
  [[ -x "$ETCD_BIN/etcd" && -x "$HELM_BIN/helm" && -f "$K8S_BIN/.complete" ]] || ok=0
  if ((ok == 0)); then
    command -v go >/dev/null || die "Kubernetes binaries are not in the cache ($K8S_BIN) and go is not installed to build them"
    log "building binaries (first time on this machine: takes a while; log follows)"
    "$HACK_DIR/build-binaries.sh" all
  fi
}

# ---------------------------------------------------------------- certificates and kubeconfigs
gen_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

# gen_cert NAME SUBJECT EXT_USAGE [SANS [CA]]
gen_cert() {
  local name="$1" subj="$2" usage="$3" sans="${4:-}" ca="${5:-ca}"
  gen_key "$PKI/$name.key"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -n "$sans" ]] && echo "subjectAltName=$sans"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# gen_kubeconfig FILE CERTNAME USER
gen_kubeconfig() {
  local file="$1" cert="$2" user="$3"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: searchrun-local
  cluster:
    server: https://$HOST_IP:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$cert.crt")
    client-key-data: $(base64 -w0 "$PKI/$cert.key")
contexts:
- name: searchrun-local
  context:
    cluster: searchrun-local
    user: $user
current-context: searchrun-local
EOF
  chmod 600 "$file"
}

gen_pki() {
  [[ -f "$PKI/.complete" ]] && return 0
  log "generating CA, certificates and kubeconfigs"
  mkdir -p "$PKI"; chmod 700 "$PKI"
  gen_key "$PKI/ca.key"
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=searchrun-local-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/ca.crt" 2>/dev/null
  # front proxy (aggregation layer): the API server's client identity towards extension API servers
  gen_key "$PKI/front-proxy-ca.key"
  openssl req -x509 -new -key "$PKI/front-proxy-ca.key" -subj "/CN=searchrun-local-front-proxy-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/front-proxy-ca.crt" 2>/dev/null
  gen_cert front-proxy-client "/CN=front-proxy-client" clientAuth "" front-proxy-ca
  gen_cert apiserver "/CN=kube-apiserver" serverAuth \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$HOST_IP,IP:$API_SERVICE_IP"
  gen_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  gen_cert admin "/O=system:masters/CN=kubernetes-admin" clientAuth
  gen_cert controller-manager "/CN=system:kube-controller-manager" clientAuth
  gen_cert scheduler "/CN=system:kube-scheduler" clientAuth
  gen_cert kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  gen_cert kubelet-serving "/CN=$NODE_NAME" serverAuth "DNS:$NODE_NAME,IP:$HOST_IP"
  gen_cert kube-proxy "/CN=system:kube-proxy" clientAuth
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  chmod 600 "$PKI/sa.key"
  gen_kubeconfig "$KUBECONFIG_ADMIN" admin kubernetes-admin
  gen_kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager system:kube-controller-manager
  gen_kubeconfig "$STATE/scheduler.kubeconfig" scheduler system:kube-scheduler
  gen_kubeconfig "$STATE/kubelet.kubeconfig" kubelet-client "system:node:$NODE_NAME"
  gen_kubeconfig "$STATE/kube-proxy.kubeconfig" kube-proxy system:kube-proxy
  touch "$PKI/.complete"
}

# ---------------------------------------------------------------- network
setup_bridge() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "creating bridge $BRIDGE ($HOST_IP/${POD_SUBNET#*/})"
    ip link add "$BRIDGE" type bridge
  fi
  ip addr show dev "$BRIDGE" | grep -q "inet $HOST_IP/" || ip addr add "$HOST_IP/${POD_SUBNET#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Pods behind a bridge: the CNI bridge plugin (isGateway) turns on forwarding anyway; kube-proxy
  # needs bridged traffic to pass through iptables.
  sysctl -qw net.ipv4.ip_forward=1
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || modprobe br_netfilter 2>/dev/null || true
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] && sysctl -qw net.bridge.bridge-nf-call-iptables=1
  mkdir -p "$STATE/cni/net.d" "$STATE/cni/ipam"
  cat >"$STATE/cni/net.d/10-searchrun.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$HOST_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

# ---------------------------------------------------------------- pause image
# A static C binary that waits for signals, packed by hand as a docker-archive and imported
# into containerd's k8s.io namespace.  Cached by the hash of its source.
pause_image_tar() {
  local src="$REPO_ROOT/images/pause/pause.c" hash dir tar
  hash="$(sha256sum "$src" | cut -c1-16)"
  dir="$CACHE/images/pause-$hash"; tar="$dir/pause.tar"
  if [[ ! -f "$tar" ]]; then
    log "building the pause image ($PAUSE_IMAGE)"
    rm -rf "$dir"; mkdir -p "$dir/rootfs" "$dir/archive"
    gcc -static -Os -s -o "$dir/rootfs/pause" "$src"
    tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$dir/rootfs" -cf "$dir/layer.tar" pause
    local diff_id cfg cfg_id
    diff_id="$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)"
    cfg="{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Entrypoint\":[\"/pause\"],\"User\":\"65535:65535\",\"WorkingDir\":\"/\"},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$diff_id\"]},\"history\":[{\"created_by\":\"hack/local-cluster.sh (images/pause/pause.c)\"}]}"
    cfg_id="$(printf '%s' "$cfg" | sha256sum | cut -d' ' -f1)"
    printf '%s' "$cfg" >"$dir/archive/$cfg_id.json"
    mkdir -p "$dir/archive/$diff_id"; mv "$dir/layer.tar" "$dir/archive/$diff_id/layer.tar"
    printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' "$cfg_id" "$PAUSE_IMAGE" "$diff_id" >"$dir/archive/manifest.json"
    tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$dir/archive" -cf "$tar.tmp" .
    mv "$tar.tmp" "$tar"
  fi
  echo "$tar"
}

# ---------------------------------------------------------------- components
start_etcd() {
  mkdir -p "$STATE/etcd"; chmod 700 "$STATE/etcd"
  start etcd "$ETCD_BIN/etcd" --name default --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level warn
  wait_for 60 "etcd" curl -sf "http://127.0.0.1:$ETCD_CLIENT_PORT/health"
}

start_apiserver() {
  start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --bind-address="$HOST_IP" --advertise-address="$HOST_IP" --secure-port="$API_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --client-ca-file="$PKI/ca.crt" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --enable-aggregator-routing=true \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --allow-privileged=true \
    --profiling=false \
    --event-ttl=1h \
    --v=1
  wait_for 120 "kube-apiserver /readyz" kubectl_ get --raw /readyz
}

start_controller_manager() {
  start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --bind-address=127.0.0.1 \
    --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --controllers='*' \
    --use-service-account-credentials=true \
    --kube-api-qps="$KCM_QPS" --kube-api-burst="$KCM_BURST" --concurrent-job-syncs="$KCM_JOB_SYNCS" \
    --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --allocate-node-cidrs=false \
    --leader-elect=false \
    --profiling=false \
    --v=1
}

start_scheduler() {
  start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --bind-address=127.0.0.1 \
    --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --leader-elect=false \
    --profiling=false \
    --v=1
}

start_containerd() {
  mkdir -p "$CTRD_DIR/root" "$CTRD_DIR/state" "$CTRD_DIR/opt"
  cat >"$CTRD_DIR/config.toml" <<EOF
# Generated by hack/local-cluster.sh: the cluster's own containerd (not /etc/containerd).
version = 2
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"

[grpc]
  address = "$CTRD_SOCK"

[ttrpc]
  address = "$CTRD_DIR/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$CTRD_DIR/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_IMAGE"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    # Sandboxes and Guaranteed pods get a negative oom_score_adj from the kubelet; lowering it
    # needs CAP_SYS_RESOURCE, which root may lack (it does on these VMs: runc then fails with
    # "failed to update /proc/self/oom_score_adj: Permission denied").  Clamp to containerd's own.
    restrict_oom_score_adj = true
    max_container_log_line_size = 16384
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$CNI_BIN_DIR"
      conf_dir = "$STATE/cni/net.d"
      max_conf_num = 1
EOF
  start containerd "$(command -v containerd)" --config "$CTRD_DIR/config.toml"
  wait_for 60 "containerd" ctr --address "$CTRD_SOCK" version
  log "importing the pause image into containerd (k8s.io)"
  ctr_ images import "$(pause_image_tar)" >/dev/null
}

start_kubelet() {
  mkdir -p "$STATE/kubelet" "$STATE/pod-logs"
  cat >"$STATE/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $HOST_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: Webhook
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$CTRD_SOCK
imageServiceEndpoint: unix://$CTRD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: $STATE/pod-logs
registerNode: true
rotateCertificates: false
serverTLSBootstrap: false
# Images arrive by import only: never garbage-collect them, never evict for disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
  nodefs.inodesFree: "1%"
maxPods: 110
# The default (-999) needs CAP_SYS_RESOURCE; keep the kubelet's own score as it is.
oomScoreAdj: 0
EOF
  start kubelet "$K8S_BIN/kubelet" \
    --config="$STATE/kubelet-config.yaml" \
    --kubeconfig="$STATE/kubelet.kubeconfig" \
    --root-dir="$STATE/kubelet" \
    --cert-dir="$STATE/kubelet/pki" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$HOST_IP" \
    --v=1
}

start_kube_proxy() {
  cat >"$STATE/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $STATE/kube-proxy.kubeconfig
mode: iptables
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: $POD_SUBNET
hostnameOverride: $NODE_NAME
nodePortAddresses: ["$HOST_IP/32"]
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
oomScoreAdj: 0
EOF
  start kube-proxy "$K8S_BIN/kube-proxy" --config="$STATE/kube-proxy-config.yaml" --v=1
}

node_ready() {
  [[ "$(kubectl_ get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

all_running() {
  local c
  for c in "${COMPONENTS[@]}"; do
    [[ "$c" == kube-proxy && "$KUBE_PROXY" != 1 ]] && continue
    [[ -n "$(pid_of "$c")" ]] || return 1
  done
}

write_env() {
  cat >"$STATE/env" <<EOF
KUBECONFIG=$KUBECONFIG_ADMIN
KUBECTL=$K8S_BIN/kubectl
HELM=$HELM_BIN/helm
HOST_IP=$HOST_IP
POD_SUBNET=$POD_SUBNET
SERVICE_CIDR=$SERVICE_CIDR
API_SERVER=https://$HOST_IP:$API_PORT
CONTAINERD_ADDRESS=$CTRD_SOCK
NODE_NAME=$NODE_NAME
KUBE_PROXY=$KUBE_PROXY
EOF
  echo "$HOST_IP" >"$STATE/host-ip"
}

# One up/down at a time on this machine (test sessions of several clones may call up at once):
# the second waits, then finds the cluster up.  The daemons must not inherit the lock's fd.
machine_lock() {
  [[ -n "${SEARCHRUN_CLUSTER_LOCK_HELD:-}" ]] && return 0
  exec 8>/run/searchrun-local-cluster.lock
  flock -w 1800 8 || die "timed out waiting for another hack/local-cluster.sh up/down"
  export SEARCHRUN_CLUSTER_LOCK_HELD=1
}

cmd_up() {
  need_root
  machine_lock
  if [[ -d "$STATE" ]] && all_running && node_ready; then
    log "already up"
    echo "$KUBECONFIG_ADMIN"
    return 0
  fi
  if [[ -d "$STATE" ]]; then
    log "found a stale or partial cluster in $STATE: cleaning it up first"
    cmd_down
  fi
  local t0=$SECONDS
  progress_start "cluster up (packages, binaries, certificates, components, node Ready)"
  ensure_packages
  ensure_binaries
  claim_machine
  mkdir -p "$STATE"
  gen_pki
  setup_bridge
  write_env
  local t1=$SECONDS
  start_etcd
  start_apiserver
  start_controller_manager
  start_scheduler
  start_containerd
  start_kubelet
  [[ "$KUBE_PROXY" == 1 ]] && start_kube_proxy
  log "waiting for node $NODE_NAME to be Ready"
  wait_for "$NODE_READY_TIMEOUT" "node $NODE_NAME Ready" node_ready
  # pods cannot be created in a namespace before its default ServiceAccount exists
  wait_for 60 "default ServiceAccount" kubectl_ -n default get serviceaccount default
  log "cluster up: node Ready in $((SECONDS - t1)) s after start of etcd ($((SECONDS - t0)) s in all); host_ip=$HOST_IP"
  progress_end "cluster up (packages, binaries, certificates, components, node Ready)"
  echo "$KUBECONFIG_ADMIN"
}

# ---------------------------------------------------------------- down
sandbox_netns_paths() {
  # network namespaces of the CRI sandboxes (containerd 1.6 bind-mounts them under /run/netns)
  local id
  for id in $(ctr_ containers ls -q 2>/dev/null); do
    ctr_ containers info "$id" 2>/dev/null | grep -o '"/var/run/netns/[^"]*"\|"/run/netns/[^"]*"' | tr -d '"'
  done | sort -u
}

# Leftovers of a cluster whose containerd died (or was killed with the session that ran it):
# container processes (recognised by their cgroup, named after a task of this containerd) and
# pod network namespaces (recognised by an address in this cluster's pod subnet).
kill_leftover_containers() {
  local tasks="$CTRD_DIR/state/io.containerd.runtime.v2.task/k8s.io" f pid cid
  [[ -d "$tasks" ]] || return 0
  for f in /proc/[0-9]*/cgroup; do
    pid="${f#/proc/}"; pid="${pid%/cgroup}"
    cid="$(awk -F/ '/kubepods/ {print $NF; exit}' "$f" 2>/dev/null)" || continue
    if [[ -n "$cid" && -d "$tasks/$cid" ]]; then
      log "ending leftover container process $pid"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

leftover_netns() {
  local n prefix="${HOST_IP%.*}."
  for n in /run/netns/cni-*; do
    [[ -e "$n" ]] || continue
    if nsenter --net="$n" ip -4 -o addr show 2>/dev/null | grep -qF " inet $prefix"; then echo "$n"; fi
  done
}

cleanup_cni_iptables() {
  # rules and chains that the bridge plugin's ipMasq added for this network
  local rule chain
  iptables -t nat -S POSTROUTING 2>/dev/null | grep -F "name: \\\"$CNI_NETWORK\\\"" | while read -r rule; do
    chain="$(sed -n 's/.* -j \(CNI-[0-9a-f]*\).*/\1/p' <<<"$rule")"
    eval "iptables -t nat ${rule/-A /-D }" 2>/dev/null || true
    if [[ -n "$chain" ]]; then iptables -t nat -F "$chain" 2>/dev/null || true; iptables -t nat -X "$chain" 2>/dev/null || true; fi
  done || true
}

cleanup_kubelet_iptables() {
  # the kubelet's own chains (KUBE-FIREWALL blocks martian localnet traffic; canaries detect flushes)
  local ipt table rule
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for table in filter nat mangle; do
      "$ipt" -t "$table" -S 2>/dev/null | grep -E -- '-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-(FIREWALL|KUBELET-CANARY)$' \
        | while read -r rule; do eval "$ipt -t $table ${rule/-A /-D }" 2>/dev/null || true; done || true
      for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
        "$ipt" -t "$table" -F "$chain" 2>/dev/null && "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

unmount_under() {
  local root="$1" m
  # deepest first; mountinfo field 5 is the mount point (octal-escaped)
  awk -v r="$root" '$5 == r || index($5, r "/") == 1 {print $5}' /proc/self/mountinfo | sort -r | uniq | while read -r m; do
    m="$(printf '%b' "$m")"
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done
}

cmd_down() {
  need_root
  machine_lock
  if [[ ! -d "$STATE" ]]; then log "not running (no $STATE)"; return 0; fi
  # never remove a directory this script did not make
  if [[ -n "$(ls -A "$STATE")" && ! -d "$STATE/pki" && ! -d "$STATE/pids" && ! -d "$STATE/containerd" ]]; then
    die "$STATE does not look like a cluster state dir made by $0: refusing to touch it"
  fi
  local netns=() c pid
  if [[ -n "$(pid_of kube-apiserver)" && -n "$(pid_of kubelet)" ]]; then
    # No controller may recreate pods while they go; the kubelet tears each sandbox down (CNI DEL).
    stop kube-controller-manager
    stop kube-scheduler
    log "deleting all pods (the kubelet stops their containers and sandboxes)"
    timeout 90 "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" delete pods --all -A \
      --grace-period=1 --wait=true --timeout=80s >/dev/null 2>&1 || log "not all pods went in time"
    local deadline=$((SECONDS + 30))
    while [[ -n "$(pid_of containerd)" ]] && ((SECONDS < deadline)); do
      [[ -z "$(ctr_ tasks ls -q 2>/dev/null)" ]] && break
      sleep 1
    done
  fi
  if [[ -n "$(pid_of containerd)" ]]; then
    mapfile -t netns < <(sandbox_netns_paths)
  fi
  stop kube-proxy
  if [[ "$KUBE_PROXY" == 1 && -x "$K8S_BIN/kube-proxy" ]]; then
    "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  fi
  stop kubelet
  if [[ -n "$(pid_of containerd)" ]]; then
    local id
    for id in $(ctr_ tasks ls -q 2>/dev/null); do
      ctr_ tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    sleep 1
    for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true; done
  fi
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop "${COMPONENTS[i]}"; done
  # containerd's shims outlive it: end those of this containerd (their -address is our socket)
  local f
  for f in /proc/[0-9]*/cmdline; do
    pid="${f#/proc/}"; pid="${pid%/cmdline}"
    if tr '\0' ' ' 2>/dev/null <"$f" | grep -q "^containerd-shim\|/containerd-shim-runc-v2 " \
      && tr '\0' '\n' 2>/dev/null <"$f" | grep -qxF "$CTRD_SOCK"; then
      log "ending leftover shim $pid"; kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  kill_leftover_containers
  mapfile -t -O "${#netns[@]}" netns < <(leftover_netns)
  for c in "${netns[@]}"; do
    [[ -e "$c" ]] || continue
    log "removing pod network namespace $c"
    umount "$c" 2>/dev/null || umount -l "$c" 2>/dev/null || true
    rm -f "$c"
  done
  cleanup_cni_iptables
  cleanup_kubelet_iptables
  unmount_under "$STATE"
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE" || true; fi
  rm -rf "$STATE"
  [[ "$(cat "$OWNER_FILE" 2>/dev/null)" == "$STATE" ]] && rm -f "$OWNER_FILE"
  log "down"
}

# ---------------------------------------------------------------- one cluster per machine
# The bridge, its address and the ports are per machine, so only one state dir can run at a
# time (two clones on one machine share them).  /run/searchrun-local-cluster.owner names the
# state dir of the cluster that holds them.
OWNER_FILE="/run/searchrun-local-cluster.owner"

cluster_alive_in() {  # any component of the cluster in state dir $1 still running?
  local f pid exe
  for f in "$1"/pids/*.pid; do
    [[ -f "$f" ]] || continue
    pid="$(cat "$f" 2>/dev/null)"; [[ -n "$pid" && -d "/proc/$pid" ]] || continue
    exe="$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)" 2>/dev/null)"
    [[ " ${COMPONENTS[*]} " == *" ${exe% (deleted)} "* ]] && return 0
  done
  return 1
}

claim_machine() {
  local other=""
  [[ -f "$OWNER_FILE" ]] && other="$(cat "$OWNER_FILE")"
  if [[ -n "$other" && "$other" != "$STATE" ]]; then
    if [[ -d "$other" ]] && cluster_alive_in "$other"; then
      die "another local cluster runs from $other (it holds bridge $BRIDGE, $HOST_IP:$API_PORT and the ports); stop it first: SEARCHRUN_CLUSTER_STATE=$other $0 down"
    fi
    if [[ -d "$other" ]]; then
      log "cleaning up after a dead cluster in $other"
      SEARCHRUN_CLUSTER_STATE="$other" "$0" down
    else
      log "cleaning up the host after a cluster whose state dir $other is gone"
      cleanup_cni_iptables; cleanup_kubelet_iptables
      if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE" || true; fi
    fi
  fi
  local p busy=()
  for p in "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" 10248 10249 10256 10257 10259 "$API_PORT" 10250; do
    [[ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]] && busy+=("$p")
  done
  ((${#busy[@]} == 0)) || die "ports in use by something else: ${busy[*]} (ss -ltnp shows by what)"
  echo "$STATE" >"$OWNER_FILE"
}

# ---------------------------------------------------------------- status
cmd_status() {
  if [[ ! -d "$STATE" ]]; then echo "cluster: down (no state dir $STATE)"; return 1; fi
  local c pid rss ok=0
  printf '%-24s %-8s %s\n' COMPONENT PID RSS_MiB
  for c in "${COMPONENTS[@]}"; do
    pid="$(pid_of "$c")"
    if [[ -n "$pid" ]]; then
      rss="$(awk '/^VmRSS/ {printf "%.0f", $2/1024}' "/proc/$pid/status" 2>/dev/null)"
      printf '%-24s %-8s %s\n' "$c" "$pid" "$rss"
    else
      printf '%-24s %-8s %s\n' "$c" "-" "not running"
    fi
  done
  echo "state dir:  $STATE"
  echo "kubeconfig: $KUBECONFIG_ADMIN"
  echo "host_ip:    $HOST_IP (bridge $BRIDGE, pods $POD_SUBNET, services $SERVICE_CIDR)"
  if all_running && node_ready; then
    echo "node:       $NODE_NAME Ready"
    echo "cluster: up"
  else
    echo "cluster: NOT healthy"
    ok=1
  fi
  return $ok
}

cmd_restart_controller_manager() {
  need_root
  machine_lock
  [[ -n "$(pid_of kube-apiserver)" ]] || die "cluster is not up"
  stop kube-controller-manager
  start_controller_manager
  log "kube-controller-manager: --kube-api-qps=$KCM_QPS --kube-api-burst=$KCM_BURST --concurrent-job-syncs=$KCM_JOB_SYNCS"
}

case "${1:-}" in
  up) cmd_up ;;
  restart-controller-manager) cmd_restart_controller_manager ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kubeconfig) echo "$KUBECONFIG_ADMIN" ;;
  env) [[ -f "$STATE/env" ]] || die "cluster is not up"; cat "$STATE/env" ;;
  *) echo "usage: $0 up|down|status|kubeconfig|env|restart-controller-manager" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Mover vs rsync, side by side in one run on the same data and the same machine.
#
#   bench/mover-vs-rsync.sh                (as root: mounts a tmpfs for the destinations)
#   bench/mover-vs-rsync.sh --link 1gbit   (as root: through a shaped link between two network
#                                           namespaces, see below)
#
# Full copy of a ~1 GiB dataset (bench/gen-dataset.py), then a ~1% mutation and an incremental
# pass, for: the mover over loopback (mutual TLS, every chunk and the root hash verified),
# rsync to an rsync daemon on 127.0.0.1 (plaintext, unverified), rsync over ssh (aes128-gcm,
# the fastest cipher here), and `cp -a` as a reference. Source in the page cache (hot),
# destinations on tmpfs, so the kernel's file creation on a fragmented disk is not what is
# measured. Reports MiB/s, ratios, wire bytes, CPU time and peak RSS of both sides. The mover's
# sender keeps its stat cache (`--cache`) between the full and the incremental pass, as rsync's
# quick check compares size and mtime: unchanged files are not read again.
#
# With `--link RATE` (tc syntax: 1gbit, 500mbit) the senders run in a network namespace
# `mvbench-snd` and the servers in `mvbench-rcv`, joined by a veth pair shaped in both directions
# with `tc qdisc ... tbf rate RATE` (netem is not available here, so no added delay). rsync then
# runs with `-z --zc=zstd` (the link is the limit, compression pays), the mover with its defaults
# (it compresses while the connection drains slower than --compress-below-mib). The namespaces are
# created and removed by the script. `cp -a` is skipped (no link to cross).
# Environment: WORK (default /var/tmp/mover-bench), ROUNDS=N (full copies repeated, alternating),
# SKIP_SSH=1, KEEP=1 (keep the tmpfs).
set -euo pipefail

LINK=
while [ $# -gt 0 ]; do
    case $1 in
        --link) LINK=$2; shift 2 ;;
        --link=*) LINK=${1#--link=}; shift ;;
        *) echo "usage: $0 [--link RATE]" >&2; exit 2 ;;
    esac
done

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
WORK=${WORK:-/var/tmp/mover-bench}
PRISTINE=$WORK/pristine
SRC=$WORK/src
DST=$WORK/dst
T=$WORK/times
BIN=$REPO/target/release/sovereign
PORT_RSYNCD=18730
PORT_SSH=12222
PORT_MOVER=18740
NS_SND=mvbench-snd
NS_RCV=mvbench-rcv
export LC_ALL=C
if [ -n "$LINK" ]; then
    HOST=10.231.0.2
    CL=(ip netns exec $NS_SND)   # clients (senders)
    SV=(ip netns exec $NS_RCV)   # servers (receivers)
    ZFLAGS=(-z --zc=zstd)
else
    HOST=127.0.0.1
    CL=()
    SV=()
    ZFLAGS=()
fi

need() { command -v "$1" >/dev/null || { echo "missing $1 (apt-get install -y $2)" >&2; exit 1; }; }
need rsync rsync
need /usr/bin/time time
[ "$(id -u)" = 0 ] || { echo "run as root (tmpfs mount)" >&2; exit 1; }

echo "== building the mover (release)" >&2
(cd "$REPO" && cargo build --release --quiet)

mkdir -p "$WORK" "$T"
if [ ! -f "$PRISTINE/.complete" ]; then
    echo "== generating the dataset" >&2
    rm -rf "$PRISTINE"
    python3 "$HERE/gen-dataset.py" create "$PRISTINE"
    touch "$PRISTINE/.complete"
fi
rm -rf "$SRC"
cp -a "$PRISTINE" "$SRC"
rm -f "$SRC/.complete"
BYTES=$(find "$SRC" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
FILES=$(find "$SRC" -type f | wc -l)

mkdir -p "$DST"
mountpoint -q "$DST" || mount -t tmpfs -o size=6g tmpfs "$DST"
cleanup() {
    [ -n "${RSYNCD_PID:-}" ] && kill "$RSYNCD_PID" 2>/dev/null || true
    [ -n "${SSHD_PID:-}" ] && kill "$SSHD_PID" 2>/dev/null || true
    if [ -n "$LINK" ]; then
        ip netns del $NS_SND 2>/dev/null || true
        ip netns del $NS_RCV 2>/dev/null || true
    fi
    [ -z "${KEEP:-}" ] && { cd /; umount "$DST" 2>/dev/null || true; }
}
trap cleanup EXIT

if [ -n "$LINK" ]; then
    # Two namespaces joined by a veth pair; each end shaped with a token bucket. The burst must
    # hold a whole GSO super-packet (64 KiB) or tbf would have to split or drop them.
    ip netns del $NS_SND 2>/dev/null || true
    ip netns del $NS_RCV 2>/dev/null || true
    ip netns add $NS_SND
    ip netns add $NS_RCV
    ip link add mvb-snd netns $NS_SND type veth peer name mvb-rcv netns $NS_RCV
    ip -n $NS_SND addr add 10.231.0.1/24 dev mvb-snd
    ip -n $NS_RCV addr add $HOST/24 dev mvb-rcv
    for ns in $NS_SND $NS_RCV; do ip -n $ns link set lo up; done
    ip -n $NS_SND link set mvb-snd up
    ip -n $NS_RCV link set mvb-rcv up
    tc -n $NS_SND qdisc add dev mvb-snd root tbf rate "$LINK" burst 256kb latency 20ms
    tc -n $NS_RCV qdisc add dev mvb-rcv root tbf rate "$LINK" burst 256kb latency 20ms
fi
# Waits until something listens on host:port, probing from the clients' side.
wait_port() {
    for _ in $(seq 100); do
        "${CL[@]}" bash -c "(echo > /dev/tcp/$HOST/$1) 2>/dev/null" && return
        sleep 0.05
    done
}

hot() { tar cf - -C "$SRC" . > /dev/null; }

# /usr/bin/time -v fields: user+sys seconds and peak RSS (KiB).
cpu() { awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.2f", u+s}' "$1"; }
rss() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$1"; }
now() { date +%s.%N; }

declare -A WALL WIRE
row() { # name wall client-timefile server-timefile wire
    local name=$1 wall=$2 ct=$3 st=$4 wire=${5:-}
    WALL[$name]=$wall
    WIRE[$name]=$wire
    printf '%-26s %8.2f s %9.1f MiB/s  cpu %6s s + %6s s  rss %5s + %5s MiB  %s\n' \
        "$name" "$wall" "$(echo "$BYTES / 1048576 / $wall" | bc -l)" \
        "$(cpu "$ct")" "$( [ -n "$st" ] && cpu "$st" || echo -)" \
        "$(rss "$ct")" "$( [ -n "$st" ] && rss "$st" || echo -)" \
        "${wire:+wire $(echo "$wire / 1048576" | bc -l | xargs printf '%.1f') MiB}"
}

# --- rsync daemon -------------------------------------------------------------------------
cat > "$WORK/rsyncd.conf" <<CONF
use chroot = no
munge symlinks = no
uid = root
gid = root
[dst]
    path = $DST/rsyncd
    read only = false
CONF
start_rsyncd() {
    local n=${1//[^a-zA-Z0-9]/_}
    "${SV[@]}" /usr/bin/time -v -o "$T/$n.server" rsync --daemon --no-detach --port=$PORT_RSYNCD \
        --address=$HOST --config="$WORK/rsyncd.conf" --log-file=/dev/null &
    RSYNCD_PID=$!
    wait_port $PORT_RSYNCD
}
stop_rsyncd() { pkill -TERM -P "$RSYNCD_PID" 2>/dev/null || true; wait "$RSYNCD_PID" 2>/dev/null || true; RSYNCD_PID=; }
rsync_wire() { awk '/Total bytes sent/ {gsub(",","",$4); s=$4} /Total bytes received/ {gsub(",","",$4); r=$4} END {print s+r}' "$1"; }

run_rsyncd() { # label
    local n=${1//[^a-zA-Z0-9]/_}
    start_rsyncd "$1"
    hot
    local t0 t1; t0=$(now)
    "${CL[@]}" /usr/bin/time -v -o "$T/$n.client" rsync -a "${ZFLAGS[@]}" --delete --stats "$SRC/" "rsync://$HOST:$PORT_RSYNCD/dst/" > "$T/$n.stats"
    t1=$(now)
    stop_rsyncd
    row "$1" "$(echo "$t1 - $t0" | bc -l)" "$T/$n.client" "$T/$n.server" "$(rsync_wire "$T/$n.stats")"
}

# --- rsync over ssh -----------------------------------------------------------------------
SSH_OK=
if [ -z "${SKIP_SSH:-}" ] && [ -x /usr/sbin/sshd ]; then
    mkdir -p "$WORK/ssh" /run/sshd
    [ -f "$WORK/ssh/host" ] || ssh-keygen -q -t ed25519 -N '' -f "$WORK/ssh/host"
    [ -f "$WORK/ssh/id" ] || ssh-keygen -q -t ed25519 -N '' -f "$WORK/ssh/id"
    cp "$WORK/ssh/id.pub" "$WORK/ssh/authorized_keys"
    cat > "$WORK/ssh/sshd_config" <<CONF
Port $PORT_SSH
ListenAddress $HOST
HostKey $WORK/ssh/host
AuthorizedKeysFile $WORK/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
StrictModes no
UsePAM no
PidFile $WORK/ssh/sshd.pid
CONF
    "${SV[@]}" /usr/sbin/sshd -D -f "$WORK/ssh/sshd_config" &
    SSHD_PID=$!
    SSH="ssh -p $PORT_SSH -i $WORK/ssh/id -c aes128-gcm@openssh.com -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
    for _ in $(seq 100); do "${CL[@]}" $SSH root@$HOST true 2>/dev/null && SSH_OK=1 && break; sleep 0.1; done
fi
run_ssh() {
    local n=${1//[^a-zA-Z0-9]/_}
    hot
    local t0 t1; t0=$(now)
    "${CL[@]}" /usr/bin/time -v -o "$T/$n.client" rsync -a "${ZFLAGS[@]}" --delete --stats -e "$SSH" \
        --rsync-path="/usr/bin/time -v -o $T/$n.server rsync" "$SRC/" "root@$HOST:$DST/ssh/" > "$T/$n.stats"
    t1=$(now)
    row "$1" "$(echo "$t1 - $t0" | bc -l)" "$T/$n.client" "$T/$n.server" "$(rsync_wire "$T/$n.stats")"
}

# --- the mover ----------------------------------------------------------------------------
"$BIN" mover certs --out "$WORK/certs" 2>/dev/null
run_mover() {
    local n=${1//[^a-zA-Z0-9]/_}
    "${SV[@]}" /usr/bin/time -v -o "$T/$n.server" "$BIN" mover receive --once --listen $HOST:$PORT_MOVER \
        --root "$DST/mover" --certs "$WORK/certs" 2> "$T/$n.receiver.log" &
    local rpid=$!
    wait_port $PORT_MOVER
    hot
    local t0 t1; t0=$(now)
    "${CL[@]}" /usr/bin/time -v -o "$T/$n.client" "$BIN" mover send --to $HOST:$PORT_MOVER --root "$SRC" \
        --certs "$WORK/certs" --pass "$2" --cache "$WORK/sender-cache" > "$T/$n.progress" 2> "$T/$n.sender.log"
    t1=$(now)
    wait "$rpid"
    local wire; wire=$(tail -1 "$T/$n.progress" | python3 -c 'import json,sys; p=json.load(sys.stdin); print(p["wireBytes"]+p["wireBytesIn"])')
    row "$1" "$(echo "$t1 - $t0" | bc -l)" "$T/$n.client" "$T/$n.server" "$wire"
}

run_cp() {
    local n=${1//[^a-zA-Z0-9]/_}
    hot
    local t0 t1; t0=$(now)
    /usr/bin/time -v -o "$T/$n.client" cp -a "$SRC/." "$DST/cp/"
    t1=$(now)
    row "$1" "$(echo "$t1 - $t0" | bc -l)" "$T/$n.client" ""
}

ratio() { echo "${WALL[$2]} / ${WALL[$1]}" | bc -l | xargs printf '%.2f'; }
ROUNDS=${ROUNDS:-1}
echo
echo "dataset: $FILES files, $(echo "$BYTES / 1048576" | bc) MiB; $(nproc) cores; destinations on tmpfs; $( [ -n "$LINK" ] && echo "link $LINK (tbf), rsync ${ZFLAGS[*]}" || echo loopback)"
echo "tool                          wall        rate        cpu client + server      peak rss client + server"
# Full copies into empty destinations, the tools alternating, ROUNDS times (the machine is
# shared: only ratios within a round mean anything). The last round's copies are kept for the
# incremental pass.
for round in $(seq "$ROUNDS"); do
    rm -rf "${DST:?}"/* && mkdir -p "$DST/rsyncd" "$DST/ssh" "$DST/mover" "$DST/cp"
    rm -f "$WORK/sender-cache"   # a full copy starts cold on both sides
    echo "-- full copy (round $round of $ROUNDS)"
    if [ -z "$LINK" ]; then
        run_cp "cp -a (reference)"
        rm -rf "$DST/cp"
    fi
    run_rsyncd "rsync daemon"
    [ -n "$SSH_OK" ] && run_ssh "rsync over ssh"
    run_mover "mover (mTLS, verified)" 1
    echo "   ratio mover / rsync daemon $(ratio "mover (mTLS, verified)" "rsync daemon")x${SSH_OK:+, mover / rsync over ssh $(ratio "mover (mTLS, verified)" "rsync over ssh")x}"
done
echo "-- incremental, after a ~1% mutation"
python3 "$HERE/gen-dataset.py" mutate "$SRC"
run_rsyncd "rsync daemon (incr)"
[ -n "$SSH_OK" ] && run_ssh "rsync over ssh (incr)"
run_mover "mover (incr)" 2

echo "-- ratios (speed, higher is better for the mover; full copy: last round)"
echo "mover / rsync daemon, full:       $(ratio "mover (mTLS, verified)" "rsync daemon")x"
[ -n "$SSH_OK" ] && echo "mover / rsync over ssh, full:     $(ratio "mover (mTLS, verified)" "rsync over ssh")x"
echo "mover / rsync daemon, incremental: $(ratio "mover (incr)" "rsync daemon (incr)")x"
echo "incremental wire bytes: mover ${WIRE["mover (incr)"]}, rsync daemon ${WIRE["rsync daemon (incr)"]}"

# The copies must be identical to the source (the mover verifies itself; this checks rsync too).
for d in rsyncd mover; do
    diff -r --no-dereference --exclude=.sovereign-mover "$SRC" "$DST/$d" > /dev/null && echo "$d copy: identical content" || echo "$d copy: DIFFERS"
done

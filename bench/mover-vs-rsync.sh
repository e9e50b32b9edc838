#!/usr/bin/env bash
# Mover vs rsync, side by side in one run on the same data and the same machine.
#
#   bench/mover-vs-rsync.sh            (as root: mounts a tmpfs for the destinations)
#
# Full copy of a ~1 GiB dataset (bench/gen-dataset.py), then a ~1% mutation and an incremental
# pass, for: the mover over loopback (mutual TLS, every chunk and the root hash verified),
# rsync to an rsync daemon on 127.0.0.1 (plaintext, unverified), rsync over ssh (aes128-gcm,
# the fastest cipher here), and `cp -a` as a reference. Source in the page cache (hot),
# destinations on tmpfs, so the kernel's file creation on a fragmented disk is not what is
# measured. Reports MiB/s, ratios, wire bytes, CPU time and peak RSS of both sides.
# Environment: WORK (default /var/tmp/mover-bench), SKIP_SSH=1, KEEP=1 (keep the tmpfs).
set -euo pipefail

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
export LC_ALL=C

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
    [ -z "${KEEP:-}" ] && { cd /; umount "$DST" 2>/dev/null || true; }
}
trap cleanup EXIT

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
    /usr/bin/time -v -o "$T/$n.server" rsync --daemon --no-detach --port=$PORT_RSYNCD \
        --config="$WORK/rsyncd.conf" --log-file=/dev/null &
    RSYNCD_PID=$!
    for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT_RSYNCD) 2>/dev/null && return; sleep 0.05; done
}
stop_rsyncd() { pkill -TERM -P "$RSYNCD_PID" 2>/dev/null || true; wait "$RSYNCD_PID" 2>/dev/null || true; RSYNCD_PID=; }
rsync_wire() { awk '/Total bytes sent/ {gsub(",","",$4); s=$4} /Total bytes received/ {gsub(",","",$4); r=$4} END {print s+r}' "$1"; }

run_rsyncd() { # label
    local n=${1//[^a-zA-Z0-9]/_}
    start_rsyncd "$1"
    hot
    local t0 t1; t0=$(now)
    /usr/bin/time -v -o "$T/$n.client" rsync -a --delete --stats "$SRC/" "rsync://127.0.0.1:$PORT_RSYNCD/dst/" > "$T/$n.stats"
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
ListenAddress 127.0.0.1
HostKey $WORK/ssh/host
AuthorizedKeysFile $WORK/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
StrictModes no
UsePAM no
PidFile $WORK/ssh/sshd.pid
CONF
    /usr/sbin/sshd -D -f "$WORK/ssh/sshd_config" &
    SSHD_PID=$!
    SSH="ssh -p $PORT_SSH -i $WORK/ssh/id -c aes128-gcm@openssh.com -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
    for _ in $(seq 100); do $SSH root@127.0.0.1 true 2>/dev/null && SSH_OK=1 && break; sleep 0.1; done
fi
run_ssh() {
    local n=${1//[^a-zA-Z0-9]/_}
    hot
    local t0 t1; t0=$(now)
    /usr/bin/time -v -o "$T/$n.client" rsync -a --delete --stats -e "$SSH" \
        --rsync-path="/usr/bin/time -v -o $T/$n.server rsync" "$SRC/" "root@127.0.0.1:$DST/ssh/" > "$T/$n.stats"
    t1=$(now)
    row "$1" "$(echo "$t1 - $t0" | bc -l)" "$T/$n.client" "$T/$n.server" "$(rsync_wire "$T/$n.stats")"
}

# --- the mover ----------------------------------------------------------------------------
"$BIN" mover certs --out "$WORK/certs" 2>/dev/null
run_mover() {
    local n=${1//[^a-zA-Z0-9]/_}
    /usr/bin/time -v -o "$T/$n.server" "$BIN" mover receive --once --listen 127.0.0.1:$PORT_MOVER \
        --root "$DST/mover" --certs "$WORK/certs" 2> "$T/$n.receiver.log" &
    local rpid=$!
    for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT_MOVER) 2>/dev/null && break; sleep 0.05; done
    hot
    local t0 t1; t0=$(now)
    /usr/bin/time -v -o "$T/$n.client" "$BIN" mover send --to 127.0.0.1:$PORT_MOVER --root "$SRC" \
        --certs "$WORK/certs" --pass "$2" > "$T/$n.progress" 2> "$T/$n.sender.log"
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

rm -rf "${DST:?}"/* && mkdir -p "$DST/rsyncd" "$DST/ssh" "$DST/mover" "$DST/cp"
echo
echo "dataset: $FILES files, $(echo "$BYTES / 1048576" | bc) MiB; $(nproc) cores; destinations on tmpfs"
echo "tool                          wall        rate        cpu client + server      peak rss client + server"
echo "-- full copy"
run_cp "cp -a (reference)"
rm -rf "$DST/cp"
run_rsyncd "rsync daemon"
[ -n "$SSH_OK" ] && run_ssh "rsync over ssh"
run_mover "mover (mTLS, verified)" 1
echo "-- incremental, after a ~1% mutation"
python3 "$HERE/gen-dataset.py" mutate "$SRC"
run_rsyncd "rsync daemon (incr)"
[ -n "$SSH_OK" ] && run_ssh "rsync over ssh (incr)"
run_mover "mover (incr)" 2

ratio() { echo "${WALL[$2]} / ${WALL[$1]}" | bc -l | xargs printf '%.2f'; }
echo "-- ratios (speed, higher is better for the mover)"
echo "mover / rsync daemon, full:       $(ratio "mover (mTLS, verified)" "rsync daemon")x"
[ -n "$SSH_OK" ] && echo "mover / rsync over ssh, full:     $(ratio "mover (mTLS, verified)" "rsync over ssh")x"
echo "mover / rsync daemon, incremental: $(ratio "mover (incr)" "rsync daemon (incr)")x"
echo "incremental wire bytes: mover ${WIRE["mover (incr)"]}, rsync daemon ${WIRE["rsync daemon (incr)"]}"

# The copies must be identical to the source (the mover verifies itself; this checks rsync too).
for d in rsyncd mover; do
    diff -r --no-dereference --exclude=.sovereign-mover "$SRC" "$DST/$d" > /dev/null && echo "$d copy: identical content" || echo "$d copy: DIFFERS"
done

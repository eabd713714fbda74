#!/usr/bin/env bash
# Starts, stops or inspects a real one-node SLURM cluster on this machine (Debian 12, run as root,
# no systemd needed): munged, mariadbd, slurmdbd, slurmctld and slurmd, started directly.
#
# Usage: scripts/slurm_cluster.sh start|stop|status
#
#   start   Installs the Debian packages if slurmctld is missing (apt-get), writes
#           /etc/slurm/slurm.conf and /etc/slurm/slurmdbd.conf (an existing file this script did not
#           write is first backed up to <file>.bak.<timestamp>), starts whatever is not running yet,
#           registers cluster "cdet" in accounting and waits (bounded) until `sinfo` shows the node
#           idle and `sacct` answers; it then prints the time it took. Idempotent: a cluster that
#           already answers `sinfo` and `sacct` is left as it is. On failure it prints the daemons'
#           log tails and exits non-zero.
#   stop    Stops only the daemons this script started (pids in $STATE_DIR/pids); a munged or a
#           mariadbd that was already running when `start` ran is left alone. Jobs still running are
#           not cancelled: their slurmstepd processes survive and are picked up again by the next
#           start (cancel them first with `scancel -u root` if that is not wanted).
#   status  Shows which daemons run (started by this script or found), `sinfo` and `squeue`.
#
# Environment:
#   SLURM_CLUSTER_DIR   state dir (pids, logs, spool, StateSaveLocation, db password);
#                       default /tmp/contrastive_det_slurm. Logs: $SLURM_CLUSTER_DIR/log/*.log
#   SLURM_MYSQL_DATADIR MariaDB data dir, initialised with mariadb-install-db if empty;
#                       default /var/lib/mysql
#   SLURM_CRED_EXPIRE   AuthInfo=cred_expire in seconds (default 10, Slurm's minimum 5)
#
# Configuration: ClusterName=cdet, one node `hostname -s` (NodeAddr=127.0.0.1, CPUs=`nproc`,
# RealMemory=90% of MemTotal in MB), partition "debug" (Default, MaxTime=INFINITE),
# select/cons_tres with CR_CPU (memory is not a consumable resource, so several 1-CPU jobs run at
# once whatever --mem they ask for, up to RealMemory), SlurmUser=root, KillWait=30, MinJobAge=3600,
# partitions "urgent" (PriorityTier 10: its jobs preempt "debug" jobs, which are requeued after
# SIGTERM and a 30 s GraceTime: PreemptType=preempt/partition_prio, PreemptMode=REQUEUE) and "short"
# (MaxTime 10 minutes),
# JobRequeue=1, SchedulerParameters=bf_interval=1,sched_interval=5.
#
# Requeue: Slurm keeps a requeued job PENDING (Reason=BeginTime) for cred_expire+1 s (~121 s with
# the default 120). This script sets AuthInfo=cred_expire=10, so `scontrol requeue` (or submitit's
# USR2 handler) gets the job running again ~11-13 s later. To start it at once, wait until the
# job is PENDING again (it is COMPLETING for a fraction of a second; an update then is lost) and
# run `scontrol update jobid=<id> StartTime=now`. `scontrol release` does not clear the BeginTime
# delay (it only undoes a hold, e.g. after `scontrol requeuehold`).
#
# The daemons are addressed through 127.0.0.1 (slurmctld 6817, slurmd 6818, slurmdbd 6819);
# MariaDB runs with --skip-networking (unix socket /run/mysqld/mysqld.sock only). Nothing is
# fetched from the network except by apt-get on a machine where the packages are missing.

set -u -o pipefail

STATE_DIR="${SLURM_CLUSTER_DIR:-/tmp/contrastive_det_slurm}"
MYSQL_DATADIR="${SLURM_MYSQL_DATADIR:-/var/lib/mysql}"
CONF_DIR=/etc/slurm
SLURM_CONF_FILE="$CONF_DIR/slurm.conf"
SLURMDBD_CONF_FILE="$CONF_DIR/slurmdbd.conf"
MARKER="# Written by contrastive-det scripts/slurm_cluster.sh"
CLUSTER=cdet
PARTITION=debug
MYSQL_SOCKET=/run/mysqld/mysqld.sock
MUNGE_SOCKET=/run/munge/munge.socket.2
READY_TIMEOUT=60        # seconds to wait for the node to be idle and sacct to answer
DAEMON_TIMEOUT=30       # seconds to wait for one daemon to come up / go down
CRED_EXPIRE="${SLURM_CRED_EXPIRE:-10}"  # AuthInfo=cred_expire (>= 5): also the delay before a requeued job may start

PID_DIR="$STATE_DIR/pids"
LOG_DIR="$STATE_DIR/log"
RUN_DIR="$STATE_DIR/run"

export SLURM_CONF="$SLURM_CONF_FILE"
NODE="$(hostname -s)"

log() { echo "[slurm_cluster] $*"; }
die() { echo "[slurm_cluster] ERROR: $*" >&2; show_logs >&2; exit 1; }
now() { date +%s.%N; }

show_logs() {
    local f
    for f in "$LOG_DIR/munged.log" "$LOG_DIR/mariadb.log" "$LOG_DIR/slurmdbd.log" \
             "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log"; do
        [[ -s "$f" ]] || continue
        echo "----- tail -n 25 $f -----"
        tail -n 25 "$f"
    done
}

# --- pid bookkeeping --------------------------------------------------------------------------

# pid_alive NAME: true if $PID_DIR/NAME.pid holds the pid of a live process whose command name
# is NAME (guards against pid reuse).
pid_alive() {
    local name="$1" pid comm
    [[ -f "$PID_DIR/$name.pid" ]] || return 1
    pid="$(cat "$PID_DIR/$name.pid" 2>/dev/null)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/comm" ]] || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)"
    case "$name" in
        mariadbd) [[ "$comm" == mariadbd || "$comm" == mysqld ]] ;;
        *) [[ "$comm" == "$name" ]] ;;
    esac
}

# wait_pidfile FILE SECONDS: waits until FILE holds a pid of a live process; prints the pid.
wait_pidfile() {
    local file="$1" limit="$2" pid i
    for ((i = 0; i < limit * 10; i++)); do
        pid="$(cat "$file" 2>/dev/null || true)"
        if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            echo "$pid"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# stop_daemons NAME...: SIGTERM the recorded pids together, wait (bounded), then SIGKILL.
stop_daemons() {
    local name pid i pids=()
    for name in "$@"; do
        if pid_alive "$name"; then
            pid="$(cat "$PID_DIR/$name.pid")"
            log "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null
            pids+=("$pid")
        fi
        rm -f "$PID_DIR/$name.pid"
    done
    for pid in "${pids[@]}"; do
        for ((i = 0; i < DAEMON_TIMEOUT * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid did not exit within ${DAEMON_TIMEOUT}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    ((${#pids[@]} > 0))
}

# --- health checks ----------------------------------------------------------------------------

munge_ok() { timeout 5 munge -n -S "$MUNGE_SOCKET" 2>/dev/null | timeout 5 unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; }
mysql_ok() { timeout 5 mariadb-admin --socket="$MYSQL_SOCKET" -uroot ping >/dev/null 2>&1; }
mysql_sql() { timeout 20 mariadb --socket="$MYSQL_SOCKET" -uroot -e "$1"; }
dbd_ok() { timeout 10 sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1; }
ctld_ok() { timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_state() { timeout 10 sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n 1; }
sacct_ok() { timeout 10 sacct -n -X -S now-1minutes >/dev/null 2>&1; }

cluster_ready() {
    [[ -f "$SLURM_CONF_FILE" ]] || return 1
    # No slurmctld at all: skip the client probes (they retry for ~10 s before giving up).
    pgrep -x slurmctld >/dev/null 2>&1 || return 1
    case "$(node_state)" in
        idle | mixed | allocated | completing) ;;
        *) return 1 ;;
    esac
    sacct_ok
}

# --- installation and configuration -----------------------------------------------------------

install_packages() {
    command -v slurmctld >/dev/null 2>&1 && return 0
    log "slurmctld not found: installing slurm-wlm slurmdbd munge mariadb-server slurm-client"
    # Keep the packages' postinst scripts from starting services (we start them ourselves).
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && created_policy=1
    fi
    local rc=0
    timeout 600 apt-get update || rc=$?
    if ((rc == 0)); then
        DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y --no-install-recommends \
            slurm-wlm slurmdbd munge mariadb-server slurm-client || rc=$?
    fi
    ((created_policy)) && rm -f "$policy"
    ((rc == 0)) || die "package installation failed (rc=$rc)"
    command -v slurmctld >/dev/null 2>&1 || die "slurmctld still missing after installation"
}

# backup_foreign FILE: back FILE up unless this script wrote it.
backup_foreign() {
    local f="$1"
    if [[ -f "$f" ]] && ! grep -qF "$MARKER" "$f"; then
        local bak
        bak="$f.bak.$(date +%Y%m%d%H%M%S)"
        cp -p "$f" "$bak"
        log "backed up existing $f to $bak"
    fi
}

# write_if_changed FILE MODE CONTENT: (re)writes FILE only when its content differs.
write_if_changed() {
    local f="$1" mode="$2" content="$3"
    if [[ -f "$f" ]] && [[ "$(cat "$f")" == "$content" ]]; then
        chmod "$mode" "$f"
        return 0
    fi
    backup_foreign "$f"
    local tmp="$f.tmp.$$"
    printf '%s\n' "$content" >"$tmp" && chmod "$mode" "$tmp" && chown root:root "$tmp" && mv -f "$tmp" "$f"
}

db_password() {
    local f="$STATE_DIR/dbpass"
    if [[ ! -s "$f" ]]; then
        (umask 077 && head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$f")
    fi
    cat "$f"
}

write_configs() {
    local cpus mem_kb real_mem
    # the CPUs this machine gives us, whatever OMP_NUM_THREADS says (nproc honours it; the tests set 1)
    cpus="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
    mem_kb="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
    real_mem=$((mem_kb * 9 / 10 / 1024))
    mkdir -p "$CONF_DIR"
    write_if_changed "$SLURM_CONF_FILE" 0644 "$MARKER
# One-node test cluster; see the script for details. Rewritten on every 'start'.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job stays ineligible (default 120 s, minimum 5 s).
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=$CRED_EXPIRE
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
SchedulerType=sched/backfill
MailProg=/bin/true
SchedulerParameters=bf_interval=1,sched_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# Preemption as on shared clusters: a job of partition \"urgent\" (PriorityTier 10) requeues the jobs of
# \"$PARTITION\" it needs the CPUs of; they get SIGTERM, GraceTime seconds, then SIGKILL, and run again later.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
ReturnToService=2
SlurmctldTimeout=10
SlurmdTimeout=10
MessageTimeout=10
InactiveLimit=0
KillWait=30
MinJobAge=3600
Waittime=0
JobRequeue=1
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mem State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=30
PartitionName=urgent Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
PartitionName=short Nodes=ALL MaxTime=10 State=UP PriorityTier=1"

    write_if_changed "$SLURMDBD_CONF_FILE" 0600 "$MARKER
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdPort=6819
SlurmUser=root
DebugLevel=info
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$RUN_DIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$(db_password)
StorageLoc=slurm_acct_db"
    chown root:root "$SLURMDBD_CONF_FILE"   # must be owned by SlurmUser (root) and 0600
    chmod 0600 "$SLURMDBD_CONF_FILE"
    CONFIGURED="CPUs=$cpus RealMemory=${real_mem}MB (MemTotal ${mem_kb}kB)"
}

# --- daemons ----------------------------------------------------------------------------------

# wait_ok NAME CHECK_FN: NAME (started by this script) is alive; wait (bounded) until CHECK_FN.
wait_ok() {
    local name="$1" check="$2" i
    for ((i = 0; i < DAEMON_TIMEOUT * 10; i++)); do
        "$check" && return 0
        pid_alive "$name" || die "$name exited"
        sleep 0.1
    done
    die "$name (pid $(cat "$PID_DIR/$name.pid")) is running but does not answer"
}

start_munge() {
    if pid_alive munged; then wait_ok munged munge_ok; return 0; fi
    if munge_ok; then
        log "munged already running (not started by this script): using it"
        return 0
    fi
    local key=/etc/munge/munge.key
    mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
    chmod 0700 /etc/munge /var/log/munge
    chmod 0755 /run/munge
    chmod 0711 /var/lib/munge
    if [[ ! -s "$key" ]]; then
        log "creating $key"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$key" --force >/dev/null || die "mungekey failed"
        else
            dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
        fi
    fi
    chown munge:munge "$key"
    chmod 0400 "$key"
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" /run/munge/munged.pid
    : >"$LOG_DIR/munged.log"
    chown munge:munge "$LOG_DIR/munged.log"
    log "starting munged"
    timeout "$DAEMON_TIMEOUT" runuser -u munge -- /usr/sbin/munged --socket="$MUNGE_SOCKET" \
        --pid-file=/run/munge/munged.pid --log-file="$LOG_DIR/munged.log" \
        || die "munged failed to start"
    local pid
    pid="$(wait_pidfile /run/munge/munged.pid "$DAEMON_TIMEOUT")" || die "munged wrote no pid"
    echo "$pid" >"$PID_DIR/munged.pid"
    wait_ok munged munge_ok
}

start_mariadb() {
    if pid_alive mariadbd; then wait_ok mariadbd mysql_ok; return 0; fi
    if mysql_ok; then
        log "MariaDB already running on $MYSQL_SOCKET (not started by this script): using it"
        return 0
    fi
    mkdir -p /run/mysqld "$MYSQL_DATADIR"
    chown mysql:mysql /run/mysqld "$MYSQL_DATADIR"
    if [[ ! -d "$MYSQL_DATADIR/mysql" ]]; then
        log "initialising MariaDB data dir $MYSQL_DATADIR"
        timeout 120 mariadb-install-db --user=mysql --datadir="$MYSQL_DATADIR" \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$LOG_DIR/mariadb-install-db.log" 2>&1 \
            || { cat "$LOG_DIR/mariadb-install-db.log" >&2; die "mariadb-install-db failed"; }
    fi
    : >"$LOG_DIR/mariadb.log"
    chown mysql:mysql "$LOG_DIR/mariadb.log"
    log "starting mariadbd"
    # No TCP at all: slurmdbd connects to "localhost", i.e. the unix socket.
    setsid nohup /usr/sbin/mariadbd --user=mysql --datadir="$MYSQL_DATADIR" \
        --socket="$MYSQL_SOCKET" --pid-file=/run/mysqld/mysqld.pid --skip-networking \
        --log-error="$LOG_DIR/mariadb.log" --innodb-lock-wait-timeout=900 \
        </dev/null >>"$LOG_DIR/mariadb.log" 2>&1 &
    echo $! >"$PID_DIR/mariadbd.pid"
    wait_ok mariadbd mysql_ok
}

setup_database() {
    local pw
    pw="$(db_password)"
    mysql_sql "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pw';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;" || die "could not create database slurm_acct_db / user slurm"
}

# start_slurm_daemon NAME PIDFILE READY_FN: starts /usr/sbin/NAME (it daemonises itself and
# writes PIDFILE), records its pid and waits until READY_FN succeeds.
start_slurm_daemon() {
    local name="$1" pidfile="$2" ready="$3" pid i
    if pid_alive "$name"; then return 0; fi
    rm -f "$pidfile"
    log "starting $name"
    timeout "$DAEMON_TIMEOUT" "/usr/sbin/$name" </dev/null >>"$LOG_DIR/$name.stdout" 2>&1 \
        || die "$name failed to start (see also $LOG_DIR/$name.stdout)"
    pid="$(wait_pidfile "$pidfile" "$DAEMON_TIMEOUT")" || die "$name wrote no pid to $pidfile"
    echo "$pid" >"$PID_DIR/$name.pid"
    for ((i = 0; i < DAEMON_TIMEOUT * 5; i++)); do
        "$ready" && return 0
        kill -0 "$pid" 2>/dev/null || die "$name exited during start"
        sleep 0.2
    done
    die "$name did not become ready within ${DAEMON_TIMEOUT}s"
}

setup_accounting() {
    if [[ -z "$(timeout 10 sacctmgr -n -P list cluster "$CLUSTER" format=cluster 2>/dev/null)" ]]; then
        log "registering cluster $CLUSTER in accounting"
        timeout 20 sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster failed"
    fi
    # Adding a cluster creates account "root" with user root; make sure of it anyway.
    if [[ -z "$(timeout 10 sacctmgr -n -P show assoc where cluster="$CLUSTER" user=root format=user 2>/dev/null)" ]]; then
        log "adding the root user association"
        timeout 20 sacctmgr -i add user root account=root cluster="$CLUSTER" >/dev/null \
            || die "sacctmgr add user root failed"
    fi
}

wait_ready() {
    local deadline state resumed=0
    deadline=$(($(date +%s) + READY_TIMEOUT))
    while (($(date +%s) < deadline)); do
        state="$(node_state)"
        case "$state" in
            idle | mixed | allocated | completing)
                sacct_ok && return 0 ;;
            down* | drain* | drained* | fail* | inval*)
                if ((resumed < 3)); then
                    log "node $NODE is '$state': resuming it"
                    timeout 10 scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
                    resumed=$((resumed + 1))
                fi ;;
        esac
        sleep 0.5
    done
    timeout 10 sinfo -N -l >&2
    timeout 10 scontrol show node "$NODE" >&2
    die "cluster not ready after ${READY_TIMEOUT}s (node state: '${state:-none}')"
}

# --- commands ---------------------------------------------------------------------------------

cmd_start() {
    local t0
    t0="$(now)"
    [[ $EUID -eq 0 ]] || { echo "must run as root" >&2; exit 1; }
    if command -v sinfo >/dev/null 2>&1 && cluster_ready; then
        log "cluster $CLUSTER already up (node $NODE: $(node_state)); nothing to do"
        return 0
    fi
    install_packages
    mkdir -p "$PID_DIR" "$LOG_DIR" "$RUN_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd"
    chmod 0755 "$STATE_DIR"
    write_configs
    log "node $NODE: $CONFIGURED; state dir $STATE_DIR"
    start_munge
    start_mariadb
    setup_database
    start_slurm_daemon slurmdbd "$RUN_DIR/slurmdbd.pid" dbd_ok
    setup_accounting
    start_slurm_daemon slurmctld "$RUN_DIR/slurmctld.pid" ctld_ok
    start_slurm_daemon slurmd "$RUN_DIR/slurmd.pid" true
    wait_ready
    log "cluster $CLUSTER up: node $NODE $(node_state), sacct OK; took $(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}') s"
}

cmd_stop() {
    local any=0
    # slurmctld still reports to slurmdbd while shutting down, and everything needs munged.
    stop_daemons slurmctld slurmd && any=1
    stop_daemons slurmdbd && any=1
    stop_daemons mariadbd munged && any=1
    ((any)) || log "no daemon started by this script is running"
    log "stopped"
}

cmd_status() {
    local name pid
    for name in munged mariadbd slurmdbd slurmctld slurmd; do
        if pid_alive "$name"; then
            pid="$(cat "$PID_DIR/$name.pid")"
            echo "$name: running (pid $pid, started by this script)"
        else
            case "$name" in
                munged) munge_ok && echo "$name: running (not started by this script)" || echo "$name: not running" ;;
                mariadbd) mysql_ok && echo "$name: running (not started by this script)" || echo "$name: not running" ;;
                *) echo "$name: not running (or not started by this script)" ;;
            esac
        fi
    done
    if command -v sinfo >/dev/null 2>&1 && pgrep -x slurmctld >/dev/null 2>&1; then
        timeout 10 sinfo 2>&1 || true
        timeout 10 squeue 2>&1 || true
    fi
    if cluster_ready; then echo "cluster: UP"; return 0; fi
    echo "cluster: DOWN"
    return 1
}

# start and stop hold a lock: two test workers (or two users) starting the cluster at once would
# otherwise both write the configs and start the daemons. The script runs again under
# `flock -o`, which keeps the lock in flock's own process: the daemons it starts must not inherit
# the locked descriptor, or the lock would last as long as they run and the next start would wait
# forever.
if [[ "${1:-}" == start || "${1:-}" == stop ]] && [[ "${SLURM_CLUSTER_LOCKED:-}" != 1 ]]; then
    mkdir -p "$(dirname "$STATE_DIR")"
    SLURM_CLUSTER_LOCKED=1 exec flock -o "$STATE_DIR.lock" bash "$0" "$@"
fi

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

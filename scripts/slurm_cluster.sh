#!/usr/bin/env bash
# A throw-away single-node SLURM cluster for the tests: `scripts/slurm_cluster.sh CMD...`
# starts munge, MariaDB, slurmdbd, slurmctld and slurmd, runs CMD with SLURM_CONF pointing at
# the cluster, stops everything and returns CMD's exit status.
#
# - Root only (the daemons run as root; Debian's slurm-wlm, slurmdbd, munge and mariadb-server
#   are installed with apt-get when missing).
# - Everything runs in a private network namespace (`unshare --net`) holding only the
#   loopback device: the daemons listen on 127.0.0.1 and nothing is reachable from outside,
#   and several clusters (CI jobs) on one host cannot collide on SLURM's ports. A private
#   mount namespace shows the cluster's configs at /etc/slurm to this command only.
# - All state (configs, munge key, database, spool, logs) lives in one folder,
#   $GUIDER_SLURM_STATE (default: a fresh /tmp/guider-slurm.XXXXXX), kept afterwards for
#   the logs. The node offers its CPUs, 8 GiB of memory and two count-only `gpu` GRES (no
#   devices: the jobs see no GPU and train on CPU), in partitions `cpu` (default) and `gpu`,
#   the names workflow/profiles/slurm uses.
# - When the cluster cannot be set up, it prints the reason and exits 77 without running CMD
#   (the Makefile turns this into a skip); CMD's own failures pass through unchanged.
set -euo pipefail

SKIP=77
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)

skip() {
    echo "slurm_cluster: SKIPPED: $*" >&2
    exit "$SKIP"
}

install_packages() {
    local missing=()
    for tool in slurmctld slurmd slurmdbd munged mariadbd sbatch sacct; do
        command -v "$tool" > /dev/null || missing+=("$tool")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get > /dev/null || skip "missing ${missing[*]} and no apt-get to install them"
    echo "slurm_cluster: installing ${PACKAGES[*]} (missing: ${missing[*]})" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; } > "$STATE/apt.log" 2>&1 \
        || skip "apt-get install ${PACKAGES[*]} failed (log: $STATE/apt.log)"
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" > /dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || { echo "slurm_cluster: $what did not come up; logs in $STATE/log" >&2; return 1; }
        sleep 0.5
    done
}

write_configs() {
    local node cpus memory
    node=$(hostname -s)
    cpus=$(nproc)
    memory=8000
    mkdir -p "$STATE/etc" "$STATE/log" "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/run" "$STATE/munge"
    cat > "$STATE/etc/slurm.conf" << EOF
ClusterName=guidertest
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePass=$STATE/munge/munge.socket
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=300
KillWait=5
SchedulerParameters=sched_interval=2
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$node Default=NO MaxTime=INFINITE State=UP
EOF
    # SLURM drops a GPU GRES without device files; two stand-ins (copies of /dev/null) that the
    # jobs never open: they only make the node advertise gres/gpu:2
    mkdir -p "$STATE/dev"
    for index in 0 1; do
        mknod "$STATE/dev/fakegpu$index" c 1 3 2> /dev/null || touch "$STATE/dev/fakegpu$index"
    done
    echo "NodeName=$node Name=gpu File=$STATE/dev/fakegpu[0-1]" > "$STATE/etc/gres.conf"
    cat > "$STATE/etc/slurmdbd.conf" << EOF
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket
DbdHost=$(hostname -s)
DbdAddr=127.0.0.1
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=guidertest
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$STATE/etc/slurmdbd.conf"
}

start_munge() {
    dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$STATE/munge/munge.key"
    munged --force --key-file="$STATE/munge/munge.key" --socket="$STATE/munge/munge.socket" \
        --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/seed"
    wait_for 20 munged munge --socket="$STATE/munge/munge.socket" -n
}

start_mariadb() {
    mariadb-install-db --user=root --datadir="$STATE/mysql" --auth-root-authentication-method=socket \
        > "$STATE/log/mariadb-install.log" 2>&1
    mariadbd --user=root --datadir="$STATE/mysql" --bind-address=127.0.0.1 --port=3306 \
        --socket="$STATE/run/mysql.sock" --pid-file="$STATE/run/mysql.pid" \
        --log-error="$STATE/log/mariadb.log" --innodb-lock-wait-timeout=900 &
    wait_for 60 MariaDB mariadb --socket="$STATE/run/mysql.sock" -e "select 1"
    mariadb --socket="$STATE/run/mysql.sock" -e "
        CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'guidertest';
        CREATE DATABASE slurm_acct_db;
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_slurm() {
    slurmdbd
    wait_for 60 slurmdbd sacctmgr --immediate list cluster
    sacctmgr --immediate add cluster guidertest > /dev/null
    sacctmgr --immediate add account guider Description=tests Organization=guider > /dev/null
    sacctmgr --immediate add user root Account=guider DefaultAccount=guider > /dev/null
    slurmctld
    wait_for 60 slurmctld scontrol ping
    slurmd -N "$(hostname -s)"
    wait_for 60 "the node" bash -c "sinfo --noheader --states=idle --format=%n | grep -q ."
}

stop_all() {
    set +e
    scancel --user=root > /dev/null 2>&1
    for pidfile in slurmd slurmctld slurmdbd; do
        [ -f "$STATE/run/$pidfile.pid" ] && kill "$(cat "$STATE/run/$pidfile.pid")" 2> /dev/null
    done
    sleep 1
    [ -f "$STATE/run/mysql.pid" ] && kill "$(cat "$STATE/run/mysql.pid")" 2> /dev/null
    [ -f "$STATE/run/munged.pid" ] && kill "$(cat "$STATE/run/munged.pid")" 2> /dev/null
    wait 2> /dev/null
}

main() {
    [ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
    [ "$(id -u)" -eq 0 ] || skip "needs root (the daemons run as root; CI runs as root)"
    if [ -z "${GUIDER_SLURM_NETNS:-}" ]; then
        command -v unshare > /dev/null || skip "no unshare(1) for a private network namespace"
        unshare --net --mount --propagation private true 2> /dev/null \
            || skip "cannot create network and mount namespaces (unshare --net --mount)"
        STATE=${GUIDER_SLURM_STATE:-$(mktemp -d /tmp/guider-slurm.XXXXXX)}
        mkdir -p "$STATE"
        export GUIDER_SLURM_STATE=$STATE
        install_packages
        GUIDER_SLURM_NETNS=1 exec unshare --net --mount --propagation private "$0" "$@"
    fi
    STATE=$GUIDER_SLURM_STATE
    ip link set lo up
    # SLURM resolves its listening address with getaddrinfo(AI_ADDRCONFIG), which finds no IPv4
    # when 127.0.0.1 is the only address; a second one on lo (reachable from this namespace only)
    ip addr add 10.254.0.1/32 dev lo
    trap stop_all EXIT
    write_configs
    export SLURM_CONF=$STATE/etc/slurm.conf
    # Snakemake's jobstep executor drops SLURM_* (SLURM_CONF too) before its inner srun, which
    # then reads the default /etc/slurm/slurm.conf: show the cluster's folder there, in this
    # mount namespace only (the host's /etc/slurm is untouched)
    mkdir -p /etc/slurm
    mount --bind "$STATE/etc" /etc/slurm
    start_munge
    start_mariadb
    start_slurm
    echo "slurm_cluster: up (state and logs in $STATE)" >&2
    set +e
    "$@"
    local status=$?
    set -e
    return $status
}

main "$@"

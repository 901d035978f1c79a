#!/usr/bin/env bash
# A throwaway Postfix instance on loopback that relays everything to one
# host, for the relay tests: its own main.cf, master.cf, queue and data
# directories under WORKDIR; nothing of the system's Postfix is touched.
#
#   postfix.sh start WORKDIR RELAY_PORT   prints "ready PORT" once smtpd listens
#   postfix.sh stop WORKDIR
#
# POSTFIX_MAIN_CF_EXTRA, if set, is appended to main.cf (bench/relay sets its
# concurrency and inflow control there). The log is WORKDIR/maillog.
#
# Needs root and Debian's postfix package (the postfix user, /etc/postfix/master.cf).
set -euo pipefail
cmd=$1 dir=$2
case $cmd in
start)
    relay=$3
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$dir/etc" "$dir/spool" "$dir/data"
    chown postfix "$dir/data"
    # Postfix's daemons run as the postfix user: they must reach the directory.
    p=$(cd "$dir" && pwd)
    while [[ $p != / ]]; do
        [[ $(stat -c %A "$p") == *x ]] || chmod o+x "$p"
        p=$(dirname "$p")
    done
    cat >"$dir/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $dir/spool
data_directory = $dir/data
meta_directory = /etc/postfix
mail_owner = postfix
myhostname = counterpart.test
mydomain = counterpart.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
relay_domains =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
relayhost = [127.0.0.1]:$relay
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file_prefixes = $dir
maillog_file = $dir/maillog
${POSTFIX_MAIN_CF_EXTRA:-}
EOF
    # The packaged master.cf, chroot off everywhere, smtpd on our port.
    sed -e "s/^smtp      inet  n       -       y/127.0.0.1:$port inet n - n/" \
        -e '/^[a-z]/ s/^\(\S\+\s\+\S\+\s\+\S\+\s\+\S\+\s\+\)y\b/\1n/' \
        /etc/postfix/master.cf >"$dir/etc/master.cf"
    grep -q "^127.0.0.1:$port inet" "$dir/etc/master.cf" || { echo "cannot set the smtpd port in master.cf" >&2; exit 1; }
    postfix -c "$dir/etc" start >"$dir/start.out" 2>&1 || { cat "$dir/start.out" >&2; exit 1; }
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "ready $port"
            exit 0
        fi
        sleep 0.1
    done
    echo "postfix smtpd does not listen on $port" >&2
    cat "$dir/maillog" >&2 || true
    exit 1
    ;;
stop)
    postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
    ;;
*)
    echo "usage: postfix.sh start WORKDIR RELAY_PORT | stop WORKDIR" >&2
    exit 2
    ;;
esac

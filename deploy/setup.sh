#!/bin/sh
# Makes the deployment's secrets, which are never committed (deploy/secrets/
# and deploy/tls/ are in .gitignore and .dockerignore):
#
#   deploy/secrets/db_password  the PostgreSQL password (POSTGRES_PASSWORD_FILE)
#   deploy/secrets/pgpass       the same as a PostgreSQL password file for emla
#                               (PGPASSFILE): postgres:5432:emla:emla:PASSWORD
#   deploy/tls/cert.pem, key.pem  a self-signed STARTTLS certificate for
#                               HOSTNAME (default emla.example.org): replace it
#                               with one your counterparts trust
#
# Existing files are kept. The gateway runs as uid 10001 in its container and
# must read pgpass and key.pem (mode 600, which the PostgreSQL password file
# requires): run as root so they can be given to that uid, or chown them.
# Requires the openssl CLI.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
host=${1:-emla.example.org}
uid=10001
umask 077
mkdir -p "$here/secrets" "$here/tls"

if [ ! -f "$here/secrets/db_password" ]; then
    # Hex only: no character that would need escaping in the pgpass file.
    openssl rand -hex 24 >"$here/secrets/db_password"
    echo "wrote $here/secrets/db_password"
fi
if [ ! -f "$here/secrets/pgpass" ]; then
    printf 'postgres:5432:emla:emla:%s\n' "$(cat "$here/secrets/db_password")" >"$here/secrets/pgpass"
    echo "wrote $here/secrets/pgpass"
fi
if [ ! -f "$here/tls/key.pem" ]; then
    openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days 825 \
        -keyout "$here/tls/key.pem" -out "$here/tls/cert.pem" \
        -subj "/CN=$host" \
        -addext "subjectAltName=DNS:$host" \
        -addext "basicConstraints=critical,CA:FALSE" \
        -addext "keyUsage=critical,digitalSignature,keyEncipherment" \
        -addext "extendedKeyUsage=serverAuth" 2>/dev/null
    chmod 644 "$here/tls/cert.pem"
    echo "wrote $here/tls/cert.pem and key.pem (self-signed for $host)"
fi
chmod 600 "$here/secrets/pgpass" "$here/tls/key.pem"
if [ "$(id -u)" = 0 ]; then
    chown "$uid:$uid" "$here/secrets/pgpass" "$here/tls/key.pem"
elif [ "$(stat -c %u "$here/secrets/pgpass")" != "$uid" ] || [ "$(stat -c %u "$here/tls/key.pem")" != "$uid" ]; then
    echo "now run: sudo chown $uid:$uid $here/secrets/pgpass $here/tls/key.pem" >&2
fi

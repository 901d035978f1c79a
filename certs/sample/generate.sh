#!/bin/sh
# Regenerates the sample PKI used by the sample policy in ../../policy/.
#
# For each fictional authority: a root CA and an issuing CA (valid about 20
# years from today) and an empty CRL from each (nextUpdate about 20 years
# ahead). bb-moj also gets the CA of its mail server (`ca_file`), bb-mfa the
# certificate of its mail server, whose SHA-256 is pinned in
# policy/authorities/bb-mfa.toml (rewritten by this script).
#
# Only public certificates and CRLs are kept: private keys live in a
# temporary directory that is deleted on exit. Requires the openssl CLI.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
policy="$here/../../policy"
days=7300
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

# Runs a command, showing its diagnostics only when it fails.
quiet() {
    "$@" 2>"$work/stderr" || { cat "$work/stderr" >&2; exit 1; }
}

ca_config() { # $1 = state dir
    cat <<CONF
[ ca ]
default_ca = ca_default
[ ca_default ]
database = $1/index.txt
crlnumber = $1/crlnumber
default_md = sha256
default_crl_days = $days
crl_extensions = crl_ext
[ crl_ext ]
authorityKeyIdentifier = keyid:always
CONF
}

ext_file() {
    cat <<CONF
[ issuing ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CONF
}

# gen_crl NAME KEY CERT OUT
gen_crl() {
    state="$work/$1"
    mkdir -p "$state"
    : >"$state/index.txt"
    echo 01 >"$state/crlnumber"
    ca_config "$state" >"$state/ca.cnf"
    quiet openssl ca -batch -gencrl -config "$state/ca.cnf" -keyfile "$2" -cert "$3" \
        -crldays "$days" -out "$4"
}

# issue KEY CSR SUBJECT CA CAKEY SERIAL EXTFILE EXTENSIONS OUT: a fresh RSA key and
# its certificate, signed by CA.
issue() {
    quiet openssl req -new -newkey rsa:3072 -nodes -sha256 -keyout "$1" -out "$2" -subj "$3"
    quiet openssl x509 -req -sha256 -days "$days" -in "$2" -CA "$4" -CAkey "$5" \
        -set_serial "$6" -extfile "$7" -extensions "$8" -out "$9"
}

# authority ID COUNTRY ORGANIZATION
authority() {
    id=$1 cc=$2 org=$3
    out="$here/$id"
    w="$work/$id"
    mkdir -p "$out" "$w"
    ext_file >"$w/ext.cnf"

    quiet openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days "$days" \
        -keyout "$w/root.key" -out "$out/root.pem" \
        -subj "/C=$cc/O=$org/CN=$org Root CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash"

    issue "$w/issuing.key" "$w/issuing.csr" "/C=$cc/O=$org/CN=$org Issuing CA" \
        "$out/root.pem" "$w/root.key" 0x1001 "$w/ext.cnf" issuing "$out/issuing.pem"

    gen_crl "$id-root" "$w/root.key" "$out/root.pem" "$out/root.crl.pem"
    gen_crl "$id-issuing" "$w/issuing.key" "$out/issuing.pem" "$out/issuing.crl.pem"
}

authority aa-moj AA "Ministry of Justice of AA"
authority bb-moj BB "Ministry of Justice of BB"
authority bb-mfa BB "Ministry of Foreign Affairs of BB"

# bb-moj: the CA that issued its mail server's TLS certificate.
quiet openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days "$days" \
    -keyout "$work/mx-ca.key" -out "$here/bb-moj/mx-ca.pem" \
    -subj "/C=BB/O=Ministry of Justice of BB/CN=BB Mail TLS CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"

# bb-mfa: its mail server's certificate, pinned by SHA-256 of the DER.
mx_host=mx.mfa.bb.example
cat >"$work/server.cnf" <<CONF
[ server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:$mx_host
CONF
issue "$work/mx.key" "$work/mx.csr" "/C=BB/O=Ministry of Foreign Affairs of BB/CN=$mx_host" \
    "$here/bb-mfa/issuing.pem" "$work/bb-mfa/issuing.key" 0x2001 "$work/server.cnf" server \
    "$here/bb-mfa/mx.pem"
pin=$(openssl x509 -in "$here/bb-mfa/mx.pem" -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1)
if [ -f "$policy/authorities/bb-mfa.toml" ]; then
    sed -i "s/^pin_sha256 = .*/pin_sha256 = \"$pin\"/" "$policy/authorities/bb-mfa.toml"
fi
echo "sample PKI written to $here (bb-mfa mail server pin: $pin)"

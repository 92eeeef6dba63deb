#!/usr/bin/env bash
# make-test-certs.sh DIR: certificates for the packages' TLS tests, made with
# the openssl CLI (nothing is committed). In DIR:
#   ca.pem/.key          a test CA
#   server.pem/.key      server certificate for localhost and 127.0.0.1, signed by ca
#   client.pem/.key      client certificate signed by ca
#   expired.pem/.key     server certificate signed by ca, valid only in 2020
#   other-ca.pem/.key    another CA
#   stranger.pem/.key    client certificate signed by other-ca
# Prints nothing on success; on failure, openssl's output and exit 1.
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
run() { "$@" >>"$log" 2>&1 || { cat "$log" >&2; echo "make-test-certs: failed: $*" >&2; exit 1; }; }

ca() {
  run openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1.key" -out "$1.pem" -days 30 -subj "/CN=polygear test $1" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}

# leaf NAME CA serverAuth|clientAuth [expired]
leaf() {
  run openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1.key" -out "$1.csr" -subj "/CN=polygear test $1"
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$3" >"$1.ext"
  if [ "${4:-}" = expired ]; then
    # `openssl x509 -req` cannot back-date before OpenSSL 3.4; `openssl ca` can.
    printf '[ca]\ndefault_ca=t\n[t]\ndatabase=%s.db\nnew_certs_dir=.\nserial=%s.serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n' "$1" "$1" >"$1.cnf"
    : >"$1.db"
    echo 1000 >"$1.serial"
    run openssl ca -batch -notext -config "$1.cnf" -cert "$2.pem" -keyfile "$2.key" -in "$1.csr" \
      -out "$1.pem" -startdate 20200101000000Z -enddate 20210101000000Z -extfile "$1.ext"
  else
    run openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial \
      -out "$1.pem" -days 30 -extfile "$1.ext"
  fi
}

ca ca
ca other-ca
leaf server ca serverAuth
leaf client ca clientAuth
leaf expired ca serverAuth expired
leaf stranger other-ca clientAuth

#!/usr/bin/env bash
# Test certificates for the secured local broker and Redis (deploy/kafka/broker.sh with
# TACT_KAFKA_SECURE=1, deploy/redis.sh with a rediss:// URL) and the tests that talk to them.
# For local use only: the CA's key lies beside its certificate.
#
#   deploy/certs.sh DIR      create them in DIR (nothing to do when DIR/.complete exists)
#
# DIR then holds (RSA 2048, PEM, valid 3650 days):
#   ca.pem ca.key                    the test CA
#   server.pem server.key            CN localhost, SAN IP:127.0.0.1 and DNS:localhost, signed by the CA
#   client.pem client.key            CN tact-client, signed by the CA; unencrypted PKCS#8 key
#   client-encrypted.key             the same key, PKCS#8 encrypted (AES-256) with `tact-key-pass`
#   other-ca.pem                     an unrelated CA, for "untrusted certificate" tests
#   other-client.pem other-client.key  a client certificate signed by that other CA
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
days=3650

log() { printf 'certs: %s\n' "$*" >&2; }

[[ -f "$dir/.complete" ]] && exit 0
command -v openssl >/dev/null || { log "openssl is required"; exit 1; }

key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }

ca() { # NAME CN
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days "$days" -subj "/CN=$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}

leaf() { # NAME CN CA EXTENSIONS
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days "$days" \
    -out "$1.pem" -extfile <(printf '%s\n' basicConstraints=CA:FALSE \
      keyUsage=critical,digitalSignature,keyEncipherment "$4") 2>/dev/null
  rm "$1.csr"
}

# Built aside and moved in whole, so a second caller (broker and Redis starting together) never
# sees half a directory.
dir=${dir%/}
mkdir -p "$(dirname "$dir")"
tmp=$(mktemp -d "$dir.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(
  cd "$tmp"
  umask 077
  ca ca tact-test-ca
  leaf server localhost ca $'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth'
  leaf client tact-client ca extendedKeyUsage=clientAuth
  openssl pkcs8 -topk8 -v2 aes-256-cbc -in client.key -out client-encrypted.key -passout pass:tact-key-pass
  ca other-ca tact-other-ca
  leaf other-client tact-client other-ca extendedKeyUsage=clientAuth
  # The CA key of the unrelated CA is not needed by anyone; certificates are public.
  rm other-ca.key ./*.srl
  chmod 644 ./*.pem
  touch .complete
)
if mv -T "$tmp" "$dir" 2>/dev/null; then
  chmod 755 "$dir"
  log "test CA and certificates written to $dir"
elif [[ -f "$dir/.complete" ]]; then
  : # another caller made them meanwhile
else
  log "$dir exists and is not a certificate directory made by this script; remove it"
  exit 1
fi

#!/usr/bin/env bash
# System packages the test suite needs: OpenSSH's sshd (the tests start real sshd
# processes on loopback), the ssh client, git, procps (ps), util-linux (setsid, flock),
# sudo (the test of `orch provision` for a login user whose sudo asks a password),
# PostgreSQL (initdb, pg_ctl, psql: the tests start a server of their own for the
# PostgreSQL state backend), and the shell linter shellcheck (rendered job scripts and our own scripts are checked).
# Installs only what is missing (always, with --always: what CI does).
set -euo pipefail
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v git >/dev/null 2>&1 || need+=(git)
command -v ps >/dev/null 2>&1 || need+=(procps)
command -v setsid >/dev/null 2>&1 || need+=(util-linux)
command -v flock >/dev/null 2>&1 || need+=(util-linux)
command -v sudo >/dev/null 2>&1 || need+=(sudo)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v psql >/dev/null 2>&1 || need+=(postgresql)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
  || need+=(postgresql)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ "${1:-}" = "--always" ]; then
  need+=(openssh-server openssh-client git procps shellcheck postgresql)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "orch tests need: ${need[*]} (no apt-get here: install them with your package manager)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "orch tests need: ${need[*]} (run as root or install sudo)" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
echo "installing: ${need[*]}" >&2
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${need[@]}" >/dev/null

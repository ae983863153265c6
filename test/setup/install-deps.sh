#!/usr/bin/env bash
# Installs the real servers and stock clients the integration tests drive (OpenSSH, PostgreSQL 15,
# MariaDB 10.11 (and its mysql-test suite: mariadb-test, for test/mysql/mtr-server.test.ts and bench/peers/mysql.ts), asciinema, sysbench, pgbouncer, tmux, chromium for the report test; haproxy for the load-balancer test; git, rsync, paramiko and PuTTY plink for the SSH transparency tests; psycopg 3 and pgjdbc for the driver comparison; PyMySQL, mysqlclient and MariaDB Connector/J for the MySQL one,
# which also needs a JDK with javac) when they are missing. Needs root for apt-get;
# as another user it only reports what is missing and the tests that need it will fail clearly.
set -euo pipefail

packages=(openssh-server openssh-client postgresql postgresql-client mariadb-server mariadb-client mariadb-test asciinema sysbench pgbouncer tmux util-linux vim-tiny curl python3-psycopg libpostgresql-jdbc-java openjdk-17-jdk-headless chromium git rsync python3-paramiko putty-tools haproxy python3-pymysql python3-mysqldb libmariadb-java)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps the packages' own services from starting: tests start private instances.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
  else
    echo "install-deps: missing Debian packages (run as root to install): ${missing[*]}" >&2
  fi
fi
# sshd refuses to start without its privilege-separation directory.
if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd && chmod 0755 /run/sshd; fi
echo "install-deps: ok"

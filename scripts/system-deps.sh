#!/usr/bin/env bash
# Debian packages the local stack needs. Installs what is missing when run as
# root with apt-get; otherwise prints the command to run and fails.
set -euo pipefail

# command on PATH -> Debian package that provides it
declare -A NEED=(
  [java]=openjdk-17-jre-headless   # Hive metastore and Spark Thrift Server (Java 17+)
  [freebcp]=freetds-bin            # FreeTDS bulk copy: the bcp engine of BcpExportOperator
  [chromium]=chromium              # headless browser for the dashboard test
  [chromedriver]=chromium-driver   # WebDriver for it
  [redis-server]=redis-server      # the cluster stack's Celery broker, where the machine runs none
)

missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
# Airflow's metadata DB: the stack runs a private PostgreSQL where the machine has none (Debian keeps the
# server programs off PATH)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "missing system packages: ${missing[*]}" >&2
    echo "install them, then run make again:  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
if [ "${java_major:-0}" -lt 17 ]; then
  echo "Java ${java_major:-?} found; Spark 4 needs Java 17 or newer (apt-get install openjdk-17-jre-headless," >&2
  echo "then point JAVA_HOME at it)." >&2
  exit 1
fi

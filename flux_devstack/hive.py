"""Hive over S3: a Hive 2.3 metastore (Derby) and Spark Thrift Server as HiveServer2.

Both come from the ``pyspark`` wheel's jars; the s3a filesystem comes from the
jars in :mod:`flux_devstack.jars`. That hadoop-aws (3.3.1) is older
than pyspark's Hadoop, so duration settings are plain numbers (the newer
defaults such as ``"60s"`` make it fail with NumberFormatException).
Note: Hive 2.3's metastore binds all interfaces (it takes no bind host).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path
from xml.sax.saxutils import escape

from flux_devstack.service import Context, DevstackError, Service, require_binary

# thrift logs every refused connection at ERROR; during start-up that is expected.
logging.getLogger("thrift.transport.TSocket").setLevel(logging.CRITICAL)

_LOG4J2 = """\
status = error
name = flux-devstack
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n
rootLogger.level = warn
rootLogger.appenderRef.console.ref = console
logger.hms.name = org.apache.hadoop.hive.metastore.HiveMetaStore
logger.hms.level = info
logger.sts.name = org.apache.spark.sql.hive.thriftserver
logger.sts.level = info
"""


def spark_home() -> Path:
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise DevstackError("the Hive services need pyspark: make setup (the devstack dependency group)")
    return Path(list(spec.submodule_search_locations)[0])


def s3a_settings(ctx: Context) -> dict[str, str]:
    return {
        "fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "fs.s3a.endpoint": ctx.url("s3"),
        "fs.s3a.path.style.access": "true",
        "fs.s3a.connection.ssl.enabled": "false",
        "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "fs.s3a.access.key": ctx.secrets["s3_access_key"],
        "fs.s3a.secret.key": ctx.secrets["s3_secret_key"],
        "fs.s3a.threads.keepalivetime": "60",
        "fs.s3a.connection.establish.timeout": "30000",
        "fs.s3a.connection.timeout": "200000",
        "fs.s3a.multipart.purge.age": "86400",
        "fs.s3a.connection.request.timeout": "0",
    }


def hadoop_xml(properties: dict[str, str]) -> str:
    rows = "\n".join(
        f"  <property><name>{escape(k)}</name><value>{escape(v)}</value></property>" for k, v in properties.items()
    )
    return f'<?xml version="1.0"?>\n<configuration>\n{rows}\n</configuration>\n'


def fresh_tmp(home: Path) -> Path:
    """``home/tmp``, emptied: what a killed JVM left there (Spark's block files, S3A buffers) goes at the next
    start."""
    tmp = home / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _write_conf(conf: Path, files: dict[str, str]) -> None:
    conf.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = conf / name
        path.write_text(text)
        path.chmod(0o600)  # core-site.xml carries the S3 secret


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(os.path.join(java_home, "bin", "java"), os.X_OK):
        return os.path.join(java_home, "bin", "java")
    return require_binary("java", "hive", "install a Java 17 runtime (Debian: apt-get install openjdk-17-jre-headless)")


class HiveMetastore(Service):
    name = "metastore"
    after = ("s3",)
    port = "metastore"
    ready_timeout = 120.0
    needs_s3a_jars = True

    def prepare(self, ctx: Context) -> None:
        home = ctx.home(self.name)
        hive_site = {
            "javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={home / 'metastore_db'};create=true",
            "javax.jdo.option.ConnectionDriverName": "org.apache.derby.iapi.jdbc.AutoloadedDriver",
            "datanucleus.schema.autoCreateAll": "true",
            "hive.metastore.schema.verification": "false",
            "hive.metastore.warehouse.dir": "s3a://warehouse/",
        }
        _write_conf(
            home / "conf",
            {
                "core-site.xml": hadoop_xml({**s3a_settings(ctx), "hadoop.tmp.dir": str(fresh_tmp(home) / "hadoop")}),
                "hive-site.xml": hadoop_xml(hive_site),
                "log4j2.properties": _LOG4J2,
            },
        )

    def command(self, ctx: Context) -> list[str]:
        home, jars = ctx.home(self.name), spark_home() / "jars"
        classpath = os.pathsep.join([str(home / "conf"), f"{jars}/*", *map(str, ctx.jars)])
        return [
            _java(),
            "-Xmx512m",
            "-Dlog4j2.contextSelector=org.apache.logging.log4j.core.selector.ClassLoaderContextSelector",
            f"-Dlog4j.configurationFile={home / 'conf' / 'log4j2.properties'}",
            f"-Dderby.system.home={home}",
            f"-Djava.io.tmpdir={home / 'tmp'}",
            "-cp",
            classpath,
            "org.apache.hadoop.hive.metastore.HiveMetaStore",
            "-p",
            str(ctx.ports["metastore"]),
        ]

    def check(self, ctx: Context) -> str:
        from hmsclient import hmsclient
        from thrift.protocol import TBinaryProtocol
        from thrift.transport import TSocket, TTransport

        sock = TSocket.TSocket("127.0.0.1", ctx.ports["metastore"])
        sock.setTimeout(5000)  # milliseconds
        protocol = TBinaryProtocol.TBinaryProtocol(TTransport.TBufferedTransport(sock))
        with hmsclient.HMSClient(iprot=protocol, oprot=protocol) as hms:
            databases = hms.get_all_databases()
        return f"{len(databases)} databases"

    def connections(self, ctx: Context) -> dict[str, dict]:
        return {
            "metastore_default": {
                "conn_type": "hive_metastore",
                "description": "flux devstack: Hive 2.3 metastore (Derby)",
                "host": "127.0.0.1",
                "port": ctx.ports["metastore"],
                "extra": {"auth_mechanism": "NOSASL"},
            }
        }

    def env(self, ctx: Context) -> dict[str, str]:
        return {"FLUX_METASTORE_URI": f"thrift://127.0.0.1:{ctx.ports['metastore']}"}


class SparkThriftServer(Service):
    """HiveServer2 protocol served by Spark's Thrift server, reading/writing tables on s3a."""

    name = "hiveserver2"
    after = ("metastore",)
    port = "hiveserver2"
    ready_timeout = 180.0
    needs_s3a_jars = True

    def prepare(self, ctx: Context) -> None:
        home = ctx.home(self.name)
        hive_site = {
            "hive.metastore.uris": f"thrift://127.0.0.1:{ctx.ports['metastore']}",
            "hive.server2.thrift.bind.host": "127.0.0.1",
            "hive.server2.thrift.port": str(ctx.ports["hiveserver2"]),
            "hive.server2.authentication": "NONE",
        }
        _write_conf(
            home / "conf",
            {
                "core-site.xml": hadoop_xml({**s3a_settings(ctx), "hadoop.tmp.dir": str(fresh_tmp(home) / "hadoop")}),
                "hive-site.xml": hadoop_xml(hive_site),
                "log4j2.properties": _LOG4J2,
            },
        )

    def environ(self, ctx: Context) -> dict[str, str]:
        env = ctx.base_env()
        conf = ctx.home(self.name) / "conf"
        env.update(
            SPARK_HOME=str(spark_home()),
            SPARK_CONF_DIR=str(conf),
            HADOOP_CONF_DIR=str(conf),
            SPARK_LOCAL_IP="127.0.0.1",
            SPARK_LOCAL_DIRS=str(ctx.home(self.name) / "tmp"),
        )
        java = _java()
        env.setdefault("JAVA_HOME", str(Path(os.path.realpath(java)).parent.parent))
        return env

    def command(self, ctx: Context) -> list[str]:
        home, jars = ctx.home(self.name), [str(j) for j in ctx.jars]
        conf = {
            "spark.ui.enabled": "false",
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.sql.warehouse.dir": "s3a://warehouse/",
            "spark.sql.shuffle.partitions": "4",
            # one clock for text <-> TIMESTAMP: no DST gaps, the same wall time in and out
            "spark.sql.session.timeZone": "UTC",
            "spark.hadoop.hive.metastore.uris": f"thrift://127.0.0.1:{ctx.ports['metastore']}",
            **{f"spark.hadoop.{k}": v for k, v in s3a_settings(ctx).items() if "secret" not in k},
        }
        return [
            str(spark_home() / "bin" / "spark-submit"),
            "--master",
            "local[2]",
            "--name",
            "flux-devstack-hiveserver2",
            "--driver-memory",
            "1g",
            "--class",
            "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2",
            "--jars",
            ",".join(jars),
            "--driver-class-path",
            os.pathsep.join(jars),
            "--driver-java-options",
            f"-Dlog4j.configurationFile={home / 'conf' / 'log4j2.properties'} -Djava.io.tmpdir={home / 'tmp'} "
            "-Duser.timezone=UTC",
            *[arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")],
            "spark-internal",
            "--hiveconf",
            f"hive.server2.thrift.port={ctx.ports['hiveserver2']}",
            "--hiveconf",
            "hive.server2.thrift.bind.host=127.0.0.1",
        ]

    def check(self, ctx: Context) -> str:
        from pyhive import hive

        conn = hive.connect(host="127.0.0.1", port=ctx.ports["hiveserver2"], username="airflow", auth="NONE")
        try:
            cursor = conn.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
        finally:
            conn.close()
        return "SELECT 1 ok"

    def connections(self, ctx: Context) -> dict[str, dict]:
        return {
            "hiveserver2_default": {
                "conn_type": "hiveserver2",
                "description": "flux devstack: Spark Thrift Server speaking HiveServer2",
                "host": "127.0.0.1",
                "port": ctx.ports["hiveserver2"],
                "login": "airflow",
                "schema": "default",
                "extra": {"auth_mechanism": "NONE"},
            }
        }

    def env(self, ctx: Context) -> dict[str, str]:
        return {"FLUX_HIVESERVER2_PORT": str(ctx.ports["hiveserver2"])}

"""The statements a transform runs, read as text (running them is tested against Spark Thrift Server in
``tests/integration/test_hive_transform.py``), and the readers of their answers, fed rows as PyHive returns
them."""

from __future__ import annotations

from flux_provider.formats import hive_dml
from flux_provider.formats.hive_dml import Target

TABLE = "`media`.`events_daily`"


def test_an_unpartitioned_insert_overwrites_the_table_with_the_select():
    assert hive_dml.insert(Target(TABLE), "SELECT id FROM s", empty=False) == [
        "INSERT OVERWRITE TABLE `media`.`events_daily`\nSELECT id FROM s"
    ]


def test_a_dynamic_partition_insert_sets_dynamic_mode_and_names_the_partition_columns():
    assert hive_dml.insert(Target(TABLE, dynamic=("day",)), "SELECT id, day FROM s", empty=False) == [
        "SET hive.exec.dynamic.partition=true",
        "SET hive.exec.dynamic.partition.mode=nonstrict",
        "SET spark.sql.sources.partitionOverwriteMode=dynamic",
        "INSERT OVERWRITE TABLE `media`.`events_daily` PARTITION (`day`)\nSELECT id, day FROM s",
    ]


def test_a_static_partition_becomes_a_quoted_literal_column_written_dynamically():
    """Static values go in as literals (quotes escaped), so the write is all-dynamic: a failed job keeps
    the previous partition. With no dynamic column the SELECT's own columns need not be looked up."""
    target = Target(TABLE, {"day": "2024-01-01' OR '1"})
    assert not target.needs_select_columns
    *settings, insert = hive_dml.insert(target, "SELECT id, name FROM s", empty=False)
    assert settings == [f"SET {s}" for s in hive_dml.DYNAMIC_SETTINGS]
    assert insert.startswith("INSERT OVERWRITE TABLE `media`.`events_daily` PARTITION (`day`)\n")
    assert "SELECT flux_q.*, '2024-01-01\\' OR \\'1' AS `day` FROM" in insert
    assert insert.endswith("FROM (\nSELECT id, name FROM s\n) flux_q")


def test_static_values_go_between_the_data_and_the_dynamic_columns():
    target = Target(TABLE, {"day": "2024-01-01"}, ("hour",))
    assert target.needs_select_columns
    insert = hive_dml.insert(target, "SELECT id, name, hour FROM s", empty=False, select_columns=["id", "name", "HOUR"])
    assert "SELECT flux_q.`id`, flux_q.`name`, '2024-01-01' AS `day`, flux_q.`hour` FROM" in insert[-1]
    assert "PARTITION (`day`, `hour`)" in insert[-1]


def test_a_static_partition_with_no_rows_is_emptied_by_a_static_overwrite():
    assert hive_dml.insert(Target(TABLE, {"day": "2024-01-01"}), "SELECT id FROM s", empty=True) == [
        "INSERT OVERWRITE TABLE `media`.`events_daily` PARTITION (`day`='2024-01-01')\nSELECT id FROM s"
    ]


def test_the_staging_rows_and_the_transform_are_counted_in_one_statement():
    target = Target(TABLE, dynamic=("day",))
    statement = hive_dml.count_rows("`media`.`events_staging`", "SELECT id, day FROM s", target)
    assert "GROUP BY `day`" in statement and "UNION ALL" in statement
    rows = [(0, None, 5), (1, "2024-01-01", 3), (1, "2024-01-02", 2)]
    assert hive_dml.read_counts(rows, target) == (5, {"day=2024-01-01": 3, "day=2024-01-02": 2})

    static = Target(TABLE, {"day": "2024-01-01"})
    assert "CROSS JOIN" in hive_dml.count_rows("`s`", "SELECT id FROM s", static)
    assert hive_dml.read_counts([(7, 0)], static) == (7, {})  # nothing to write into the static partition
    assert hive_dml.read_counts([(7, 7)], Target(TABLE)) == (7, {"": 7})


def test_the_written_partitions_are_counted_in_one_statement_and_a_missing_one_counts_zero():
    target = Target(TABLE, dynamic=("day",))
    written = ["day=2024-01-01", "day=2024-01-02"]
    statement = hive_dml.count_target(target, written)
    assert "WHERE (`day` = '2024-01-01') OR (`day` = '2024-01-02') GROUP BY `day`" in statement
    assert hive_dml.read_target_counts([("2024-01-01", 3)], target, written) == {
        "day=2024-01-01": 3,
        "day=2024-01-02": 0,
    }
    assert hive_dml.count_target(target, []) is None  # nothing written: nothing to count
    assert hive_dml.count_target(Target(TABLE), []) == "SELECT COUNT(*) FROM `media`.`events_daily`"
    assert hive_dml.read_target_counts([(4,)], Target(TABLE), []) == {"": 4}


def test_a_created_target_has_its_columns_partitions_and_format():
    statement = hive_dml.create_target(TABLE, {"id": "BIGINT", "name": "STRING"}, {"day": "STRING"}, "PARQUET")
    assert statement == (
        "CREATE TABLE IF NOT EXISTS `media`.`events_daily` (`id` BIGINT, `name` STRING) "
        "PARTITIONED BY (`day` STRING) STORED AS PARQUET"
    )
    assert "PARTITIONED" not in hive_dml.create_target(TABLE, {"id": "BIGINT"}, {}, "ORC")

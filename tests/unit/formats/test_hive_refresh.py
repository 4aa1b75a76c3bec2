"""The refresh's statements as text, and its pure decisions (no session): what the operator runs on the stack."""

from __future__ import annotations

import pytest

from flux_provider.formats import hive_refresh

TABLE = "`media`.`events_daily`"


def test_each_statement_quotes_its_values():
    day = {"day": "2024-01-01", "country": "c'ote"}
    assert hive_refresh.repair(TABLE) == "MSCK REPAIR TABLE `media`.`events_daily`"
    assert hive_refresh.add_partition(TABLE, day, None) == (
        "ALTER TABLE `media`.`events_daily` ADD IF NOT EXISTS PARTITION (`day`='2024-01-01', `country`='c\\'ote')"
    )
    assert hive_refresh.add_partition(TABLE, {"day": "1"}, "s3a://b/x").endswith(" LOCATION 's3a://b/x'")
    assert hive_refresh.move_partition(TABLE, {"day": "1"}, "s3a://b/y") == (
        "ALTER TABLE `media`.`events_daily` PARTITION (`day`='1') SET LOCATION 's3a://b/y'"
    )
    assert hive_refresh.point_view("`media`.`latest`", TABLE, {"day": "1"}) == (
        "CREATE OR REPLACE VIEW `media`.`latest` AS SELECT * FROM `media`.`events_daily` WHERE `day` = '1'"
    )
    assert hive_refresh.drop_partition(TABLE, {"day": "1"}, purge=True).endswith(
        "DROP IF EXISTS PARTITION (`day`='1') PURGE"
    )
    assert not hive_refresh.drop_partition(TABLE, {"day": "1"}, purge=False).endswith("PURGE")
    assert hive_refresh.analyze(TABLE, {"day": "1"}) == (
        "ANALYZE TABLE `media`.`events_daily` PARTITION (`day`='1') COMPUTE STATISTICS"
    )


def test_the_newest_partition_compares_numbers_as_numbers_and_text_as_text():
    keys = (("year", "int"), ("tag", "string"))
    values = [{"year": "9", "tag": "b"}, {"year": "10", "tag": "a"}, {"year": "10", "tag": "b"}]
    assert max(values, key=lambda v: hive_refresh.sort_key(v, keys)) == {"year": "10", "tag": "b"}


@pytest.mark.parametrize(
    "days, keep, expected",
    [
        (("2024-01-01", "2024-01-03", "2024-01-10"), None, ["day=2024-01-01", "day=2024-01-03"]),
        (("2024-01-01",), "day=2024-01-01", []),
    ],
)
def test_expired_names_what_is_older_than_the_window_but_the_newest(days, keep, expected):
    values = {f"day={d}": {"day": d} for d in days}
    assert hive_refresh.expired(values, "day", "2024-01-10", 6, keep) == expected


def test_landing_retention_drops_its_generations_from_the_raw_table_in_one_statement():
    assert hive_refresh.drop_generations("`media`.`t_raw`", ["r1", "r'2"]) == (
        "ALTER TABLE `media`.`t_raw` DROP IF EXISTS PARTITION (`flux_run`='r1'), PARTITION (`flux_run`='r\\'2')"
    )

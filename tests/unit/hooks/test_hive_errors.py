"""What a Hive/Spark refusal tells the user to write (pure: the server's texts as Spark 4 words them)."""

from __future__ import annotations

import pytest

from flux_provider.hooks.hive_session import type_fix


@pytest.mark.parametrize(
    "text",
    [
        "[INCOMPATIBLE_DATA_FOR_TABLE.CANNOT_SAFELY_CAST] Cannot write incompatible data for the table "
        '`spark_catalog`.`media`.`events`: Cannot safely cast `t2` "STRING" to "TIMESTAMP". SQLSTATE: KD000',
        "Cannot safely cast 't2': string to timestamp",
    ],
)
def test_an_unsafe_cast_names_the_cast_to_write(text):
    assert type_fix(text) == (
        "Fix: cast it in the transform's SELECT: CAST(t2 AS TIMESTAMP) AS t2 (the staging column is STRING), "
        "or make the target column STRING"
    )


def test_other_errors_get_no_cast_advice():
    assert type_fix("[TABLE_OR_VIEW_NOT_FOUND] The table or view `media`.`x` cannot be found.") is None

"""The defaults the XSD states are the defaults a spec gets: from the parser, from the model, and from the
recovery rules, for every attribute that has one (a new default without a check here fails the test)."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from lxml import etree

from flux_provider.rules import Match, Retry, Rule, ThrottleDown
from flux_provider.specs import model
from flux_provider.specs.parser import load_spec
from tests.support.specs import MINIMAL, write

XS = "{http://www.w3.org/2001/XMLSchema}"

#: (element, attribute) -> (what the parsed minimal spec holds, the model's own default or None)
WHERE = {
    ("source", "connection"): (lambda s: s.source.connection, None),
    ("export", "engine"): (lambda s: s.export.engine, model.Export().engine),
    ("export", "mode"): (lambda s: s.export.mode, model.Export().mode),
    ("export", "batchSize"): (lambda s: s.export.batch_size, model.Export().batch_size),
    ("chunking", "sizeMb"): (lambda s: s.chunking.chunk_mb, model.Chunking().chunk_mb),
    ("chunking", "compression"): (lambda s: s.chunking.compression, model.Chunking().compression),
    ("chunking", "fieldDelimiter"): (lambda s: s.chunking.field_delimiter, model.Chunking().field_delimiter),
    ("chunking", "collectionDelimiter"): (
        lambda s: s.chunking.collection_delimiter,
        model.Chunking().collection_delimiter,
    ),
    ("chunking", "mapKeyDelimiter"): (lambda s: s.chunking.map_key_delimiter, model.Chunking().map_key_delimiter),
    ("chunking", "nullFormat"): (lambda s: s.chunking.null_format, model.Chunking().null_format),
    ("s3", "connection"): (lambda s: s.s3_connection, None),
    ("partition", "type"): (lambda s: s.hive.partitions[0].type, model.HivePartition("p").type),
    ("hive", "connection"): (lambda s: s.hive.connection, None),
    ("hive", "metastore"): (lambda s: s.hive.metastore, None),
    ("hive", "format"): (lambda s: s.hive.format, None),
    ("hive", "createDatabase"): (lambda s: s.hive.create_database, None),
    ("hive", "timestampPrecision"): (lambda s: s.hive.timestamp_precision, None),
    ("refresh", "purge"): (lambda s: s.refresh.purge, model.Refresh().purge),
    ("refresh", "analyze"): (lambda s: s.refresh.analyze, model.Refresh().analyze),
    ("refresh", "repair"): (lambda s: s.refresh.repair, model.Refresh().repair),
    ("schedule", "start"): (lambda s: s.schedule.start, model.Schedule().start),
    ("schedule", "catchup"): (lambda s: s.schedule.catchup, model.Schedule().catchup),
    ("schedule", "maxActiveRuns"): (lambda s: s.schedule.max_active_runs, model.Schedule().max_active_runs),
    ("schedule", "timezone"): (lambda s: s.schedule.timezone, model.Schedule().timezone),
    ("schedule", "require"): (lambda s: s.schedule.require, model.Schedule().require),
    ("schedule", "priority"): (lambda s: s.schedule.priority, model.Schedule().priority),
    ("throttle", "initial"): (lambda s: s.throttle.initial, None),
    ("throttle", "min"): (lambda s: s.throttle.min, None),
    ("throttle", "max"): (lambda s: s.throttle.max, None),
    ("throttle", "algorithm"): (lambda s: s.throttle.algorithm, model.Throttle.algorithm),
    ("throttle", "weight"): (lambda s: s.throttle.weight, model.Throttle.weight),
    ("throttle", "floor"): (lambda s: s.throttle.floor, model.Throttle.floor),
}
#: defaults the recovery rules apply when an action leaves the attribute out
ACTIONS = {("retry", "delaySeconds"), ("retry", "backoff"), ("retry", "jitter"), ("throttleDown", "factor")}
NOT_A_SETTING = {("dataset", "version")}  # the spec format's version


def xsd_defaults() -> dict[tuple[str, str], str]:
    tree = etree.parse(str(resources.files("flux_provider.specs") / "dataset.xsd"))
    out = {}
    for attribute in tree.iter(f"{XS}attribute"):
        if attribute.get("default") is None:
            continue
        owner = next(e for e in attribute.iterancestors() if e.tag in (f"{XS}element", f"{XS}complexType"))
        while not owner.get("name"):
            owner = next(e for e in owner.iterancestors() if e.tag in (f"{XS}element", f"{XS}complexType"))
        out[(owner.get("name"), attribute.get("name"))] = attribute.get("default")
    return out


def typed(text: str, like):
    if isinstance(like, bool):
        return text == "true"
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float):
        return float(text)
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), text)  # \001 is the byte 0x01


def test_every_xsd_default_is_checked_here():
    assert set(xsd_defaults()) == set(WHERE) | ACTIONS | NOT_A_SETTING


@pytest.fixture(scope="module")
def minimal(tmp_path_factory):
    return load_spec(write(tmp_path_factory.mktemp("spec"), MINIMAL.format(name="events")), check_queries=False)


@pytest.mark.parametrize("key", sorted(WHERE), ids=lambda k: f"{k[0]}.{k[1]}")
def test_a_spec_without_the_attribute_gets_the_xsd_default(key, minimal):
    parsed, model_default = WHERE[key]
    value = parsed(minimal)
    assert value == typed(xsd_defaults()[key], value)
    if model_default is not None:
        assert model_default == value


def test_an_action_without_its_attributes_behaves_as_the_xsd_says():
    from flux_provider.errors import ErrorRecord
    from flux_provider.recovery import Recovery

    defaults = xsd_defaults()
    rules = (Rule(Match(), (Retry(count=3), ThrottleDown())),)
    recovery = Recovery(rules=rules)
    first = recovery.decide(ErrorRecord(error_class="deadlock", terminal=False, message="x"), 1)
    second = recovery.decide(ErrorRecord(error_class="deadlock", terminal=False, message="x"), 2)
    assert first.delay == float(defaults[("retry", "delaySeconds")])
    assert second.delay == first.delay * float(defaults[("retry", "backoff")])  # no backoff: the same delay
    assert defaults[("retry", "jitter")] == "false" and first.delay == round(first.delay, 1)
    assert first.throttle_down == float(defaults[("throttleDown", "factor")])
    assert (Retry().delay_seconds, Retry().backoff, Retry().jitter) == (60, 1, False)  # the typed actions agree
    assert ThrottleDown().factor == 0.5


def test_every_field_of_export_is_an_attribute_the_xsd_declares_and_the_parser_reads(tmp_path):
    """<export> is read by field name (batch_size is batchSize=): a field the XSD lacks, or an attribute the
    model lacks, fails here, and each value given in a spec arrives typed."""
    import dataclasses

    tree = etree.parse(str(resources.files("flux_provider.specs") / "dataset.xsd"))
    export = next(e for e in tree.iter(f"{XS}element") if e.get("name") == "export")
    declared = {a.get("name") for a in export.iter(f"{XS}attribute")}
    fields = {re.sub(r"_(\w)", lambda m: m[1].upper(), f.name) for f in dataclasses.fields(model.Export)}
    assert declared == fields
    given = '<export engine="dbapi" mode="file" batchSize="500" timeoutMinutes="2.5" queue="host-a"/>'
    text = MINIMAL.format(name="events").replace(
        '<source schema="dbo" table="events"/>', f'<source schema="dbo" table="events"/>{given}'
    )
    spec = load_spec(write(tmp_path, text), check_queries=False)
    assert spec.export == model.Export(engine="dbapi", mode="file", batch_size=500, timeout_minutes=2.5, queue="host-a")


def test_an_upload_operator_without_chunking_arguments_chunks_as_a_spec_without_chunking(minimal):
    """One definition of chunking and encoding: an operator made with none of its arguments, an operator's
    empty ``upload_options`` and a spec without ``<chunking>`` agree, and the plan hands the spec's on whole."""
    from flux_provider.hooks.s3_chunk_upload import ChunkSettings
    from flux_provider.operators.bcp_to_s3 import BcpToS3Operator
    from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator
    from flux_provider.specs.plan import plan_for

    upload = S3ChunkUploadOperator(task_id="u", dataset="events", s3_location="s3://b/events")
    streaming = BcpToS3Operator(task_id="s", dataset="events", table="events", s3_location="s3://b/events")
    assert upload.settings.chunking == streaming.settings.chunking == ChunkSettings().chunking == minimal.chunking
    assert minimal.chunking.compression == "gzip" and minimal.chunking.extension == ".hive.gz"
    assert plan_for(minimal, load=lambda name: None).tasks[0].args.upload_options is minimal.chunking


def test_a_wrong_upload_option_fails_when_the_operator_is_made():
    from flux_provider.errors import ErrorClass, FluxError
    from flux_provider.operators.bcp_to_s3 import BcpToS3Operator
    from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator

    with pytest.raises(FluxError) as bad:
        S3ChunkUploadOperator(task_id="u", dataset="events", s3_location="s3://b/e", compression="zstd")
    assert bad.value.error_class == ErrorClass.CONFIG and bad.value.dataset == "events"
    assert "'zstd' is not None or 'gzip'" in str(bad.value)
    with pytest.raises(FluxError, match="chunk_size is not an upload option; the options are block_mb, chunk_mb"):
        BcpToS3Operator(
            task_id="s", dataset="events", table="e", s3_location="s3://b/e", upload_options={"chunk_size": 1}
        )
    with pytest.raises(FluxError, match="a chunk needs a limit"):
        S3ChunkUploadOperator(task_id="u", dataset="events", s3_location="s3://b/e", chunk_mb=None)

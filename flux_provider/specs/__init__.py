"""XML data-set specs: the format (dataset.xsd), the safe parser, the DAG factory and pool sync."""

from flux_provider.specs.model import DatasetSpec
from flux_provider.specs.parser import SpecError, load_spec

__all__ = ["DatasetSpec", "SpecError", "load_spec"]

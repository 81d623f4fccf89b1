"""The total CUDA reports per GPU model and label (catalog.types._CUDA_TOTAL_GIB), which the engines' fractions
multiply (engine_defaults.cuda_total_bytes), and the label-less-DRIVER_RESERVED fallback."""

from rackfit.catalog import GPU, load_catalog
from rackfit.catalog.types import _CUDA_TOTAL_GIB
from rackfit.estimator.engine_defaults import DRIVER_RESERVED, cuda_total_bytes
from rackfit.units import GiB, MiB


def _gpu(model: str, mib: int, architecture: str = "ampere") -> GPU:
    return GPU(model=model, product=model, memoryGB=mib / 954, memoryMiB=mib, architecture=architecture)


def test_the_catalog_t4_takes_its_published_total_not_the_label_less_the_median():
    t4 = next(t.gpu for t in load_catalog().instance_types.values() if t.gpu.model == "T4")
    assert cuda_total_bytes(t4) == round(14.56 * GiB)
    assert cuda_total_bytes(t4) - (t4.memory_bytes - DRIVER_RESERVED) == round(0.06 * GiB)


def test_a_model_without_a_published_total_keeps_the_label_less_driver_reserved():
    l4 = _gpu("L4", 23034, "ada")
    assert l4.published_cuda_total_bytes is None
    assert cuda_total_bytes(l4) == 23034 * MiB - DRIVER_RESERVED


def test_the_total_goes_by_label_too():
    # A100 40GB and 80GB share the model name; an H100 written at another label (a row whose memoryMiB encodes its
    # log's total) keeps the fallback
    assert cuda_total_bytes(_gpu("A100", 40960)) == round(39.50 * GiB)
    assert cuda_total_bytes(_gpu("A100", 81920)) == round(79.25 * GiB)
    assert cuda_total_bytes(_gpu("H100", 81111, "hopper")) == 81111 * MiB - DRIVER_RESERVED


def test_every_published_total_is_below_its_label_by_less_than_a_gib():
    for (model, mib), gib in _CUDA_TOTAL_GIB.items():
        assert 0 < mib / 1024 - gib < 1, model

"""Every AWS-recorded case in ../shared/conformance runs through the public API and matches AWS:
JSONPath and JSONata cases alike (the corpus README's comparison procedure, in tests/conformance.py).

Without the corpus the module is skipped with the reason; under CI a missing corpus is an error.
"""

from __future__ import annotations

import os

import pytest

from tests.conformance import CORPUS, judge, load_cases

if not CORPUS.is_dir():
    if os.environ.get("CI"):
        raise RuntimeError(f"the conformance corpus is missing at {CORPUS}; CI requires it")
    pytest.skip(
        f"conformance corpus not found at {CORPUS} (set SMQ_CONFORMANCE_DIR)", allow_module_level=True
    )

CASES = load_cases()
JSONPATH = [c for c in CASES if c.tags[0] == "jsonpath"]
JSONATA = [c for c in CASES if c.tags[0] == "jsonata"]


def test_corpus_is_complete() -> None:
    assert len(CASES) >= 547
    assert len(JSONPATH) >= 476
    assert len(JSONATA) >= 71


@pytest.mark.conformance
@pytest.mark.parametrize("case", JSONPATH, ids=[c.id for c in JSONPATH])
def test_jsonpath_case_matches_aws(case) -> None:
    difference = judge(case)
    assert difference is None, difference


@pytest.mark.conformance
@pytest.mark.parametrize("case", JSONATA, ids=[c.id for c in JSONATA])
def test_jsonata_case_matches_aws(case) -> None:
    difference = judge(case)
    assert difference is None, difference

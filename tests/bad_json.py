"""Bodies that are not one unambiguous JSON document, with the reason the service gives (400).

Shared by the in-process error tests (tests/test_api_errors.py) and the live hostile-input corpus
(tests/test_hostile_input.py), so both check the same inputs.
"""

import pytest

BAD_JSON = [
    pytest.param(b'{"findings": {bladder: retention}}', "malformed JSON", id="malformed"),
    pytest.param(b'{"findings": {"bladder": "retention"', "malformed JSON", id="truncated"),
    pytest.param(b'{"findings": {}} {"findings": {}}', "malformed JSON", id="two-documents"),
    pytest.param(b'\xef\xbb\xbf{"findings": {}}', "malformed JSON", id="utf8-bom"),
    pytest.param(b'{"findings": {"bladder": "\xff\xfe"}}', "not valid UTF-8", id="invalid-utf8"),
    pytest.param(b'{"findings": {"bladder": "\xed\xa0\x80"}}', "not valid UTF-8", id="utf8-encoded-surrogate"),
    pytest.param('{"findings": {}}'.encode("utf-16"), "not valid UTF-8", id="utf16"),
    pytest.param(b'{"findings": {}, "patient": {"age": NaN}}', "NaN and Infinity", id="nan"),
    pytest.param(b'{"findings": {"pain": {"severity": Infinity}}}', "NaN and Infinity", id="infinity"),
    pytest.param(b'{"findings": {"pain": {"severity": -Infinity}}}', "NaN and Infinity", id="minus-infinity"),
    pytest.param(b'{"findings": {}, "findings": {"bladder": "retention"}}', "duplicate", id="duplicate-top-level"),
    pytest.param(b'{"findings": {"bladder": "retention", "bladder": "normal"}}', "duplicate", id="duplicate-nested"),
    pytest.param(b'{"findings": {"pain": {"severity": 1' + b"0" * 5000 + b"}}}", "number too long", id="int-5000"),
    # issue 20: an escaped unpaired surrogate, as a key or a value, gave a 500 when the answer was encoded
    pytest.param(b'{"findings": {"\\udfff": 1}}', "unpaired surrogate", id="lone-surrogate-key"),
    pytest.param(b'{"cases": [{"findings": {"bladder": "\\ud800"}}]}', "unpaired surrogate", id="lone-surrogate-value"),
    # issue 20: a float literal too large for a double was read as infinity
    pytest.param(b'{"findings": {"pain": {"severity": 1e400}}}', "number out of range", id="float-1e400"),
    pytest.param(b"", "empty body", id="empty"),
    pytest.param(b" \r\n\t ", "empty body", id="whitespace"),
    pytest.param(b'{"findings": {"bladder": "retention"}} trailing', "malformed JSON", id="trailing-garbage"),
    pytest.param(b"[" * 50000, "nesting too deep", id="deep-array"),
    pytest.param(b'{"a":' * 12000, "nesting too deep", id="deep-object"),
]

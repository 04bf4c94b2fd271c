"""Request examples for the OpenAPI document (the response examples are computed from them)."""

TRIAGE_REQUEST = {
    "patient": {"age": 46, "sex": "female"},
    "findings": {
        "slr": {"result": "weak", "side": "left"},
        "sensation": {"status": "reduced", "areas": ["anterior_thigh"]},
        "saddle_numbness": "absent",
        "bladder": "normal",
        "bowel": "normal",
        "pain": {"locations": ["low_back", "anterior_thigh"], "severity": 5, "unrelenting": "absent"},
        "history": {"onset": "gradual", "progression": "progressive", "trauma": "absent"},
        "systemic": {"fever": "absent", "weight_loss": "absent"},
    },
}

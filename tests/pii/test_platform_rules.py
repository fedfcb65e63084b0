"""Custom recognizers in the platform config reach every consumer of the detector."""

from __future__ import annotations

from headwater import Config, Platform
from headwater.pii import configure, redact_pii


def test_platform_installs_configured_recognizers(tmp_path) -> None:
    cfg = Config.embedded(tmp_path / "hw")
    cfg = cfg.model_copy(update={"pii": cfg.pii.model_copy(update={"text": type(cfg.pii.text)(
        recognizers=[{"kind": "employee_id", "pattern": r"EMP-\d{6}", "score": 0.95}])})})
    try:
        assert "EMP-123456" in redact_pii("badge EMP-123456 lost")  # not PII until configured
        with Platform.open(cfg):
            assert "EMP-123456" not in redact_pii("badge EMP-123456 lost")
    finally:
        configure(None)

"""The AWS Terraform module: every file parses (python-hcl2), variables and outputs are
documented, the resources have the properties Headwater relies on (logical replication, tiered
lifecycle, encryption, IRSA trust, least-privilege S3), and checkov passes with every skipped
check justified in deploy/terraform/.checkov.yaml.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, ROOT, run
from tests.fix_services import require_service

TERRAFORM = DEPLOY / "terraform"
MODULE = TERRAFORM / "aws"
TF_FILES = sorted(TERRAFORM.rglob("*.tf"))
CHECKOV_CONFIG = TERRAFORM / ".checkov.yaml"


def _hcl2() -> Any:
    try:
        import hcl2
    except ImportError:
        require_service("python-hcl2", "pip install 'headwater[test]'")
    return hcl2


@functools.cache
def parse(path: Path) -> dict[str, Any]:
    """One .tf file as data (parsed once per test process: lark is slow)."""
    hcl2 = _hcl2()
    options = hcl2.SerializationOptions(strip_string_quotes=True, with_comments=False, explicit_blocks=False)
    with path.open() as f:
        return hcl2.load(f, serialization_options=options)


def blocks(kind: str, directory: Path = MODULE) -> dict[str, dict[str, Any]]:
    """Top-level blocks of one kind across a directory: {name: body}."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        for item in parse(path).get(kind, []):
            for name, body in item.items():
                if kind in ("resource", "data"):  # {type: {name: body}}: merge per type
                    out.setdefault(name, {}).update(body)
                else:
                    out[name] = body
    return out


def resources(rtype: str) -> dict[str, dict[str, Any]]:
    return blocks("resource").get(rtype, {})


def data(dtype: str) -> dict[str, dict[str, Any]]:
    return blocks("data").get(dtype, {})


def test_there_is_terraform_to_check() -> None:
    names = {p.name for p in MODULE.glob("*.tf")}
    assert {"versions.tf", "variables.tf", "outputs.tf", "s3.tf", "rds.tf", "iam.tf", "msk.tf"} <= names


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_every_file_parses(path: Path) -> None:
    assert parse(path), f"{path} is empty"


def test_variables_and_outputs_are_documented() -> None:
    readme = (MODULE / "README.md").read_text()
    variables, outputs = blocks("variable"), blocks("output")
    assert len(variables) >= 20 and len(outputs) >= 8
    for name, body in variables.items():
        assert len(body.get("description", "")) >= 10, f"variable {name} has no description"
        assert "type" in body, f"variable {name} has no type"
        assert f"| `{name}` |" in readme, f"variable {name} is missing from the module README"
    for name, body in outputs.items():
        assert len(body.get("description", "")) >= 10, f"output {name} has no description"
        assert f"| `{name}` |" in readme, f"output {name} is missing from the module README"
    # The README's tables name nothing that no longer exists.
    listed = set(re.findall(r"^\| `([a-z0-9_]+)` \|", readme, re.MULTILINE))
    assert listed == set(variables) | set(outputs)
    for name, body in blocks("variable", TERRAFORM / "examples" / "production").items():
        assert body.get("description"), f"example variable {name} has no description"


def test_lake_bucket_is_private_encrypted_versioned_and_tiered() -> None:
    assert resources("aws_s3_bucket_versioning")["lake"]["versioning_configuration"][0]["status"] == "Enabled"
    sse = resources("aws_s3_bucket_server_side_encryption_configuration")["lake"]["rule"][0]
    assert sse["apply_server_side_encryption_by_default"][0]["sse_algorithm"] == "aws:kms"
    block = resources("aws_s3_bucket_public_access_block")["lake"]
    assert all(block[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                          "restrict_public_buckets"))
    rules = resources("aws_s3_bucket_lifecycle_configuration")["lake"]["rule"]
    tiers = next(r for r in rules if r["id"] == "storage-tiers")
    assert [t["storage_class"] for t in tiers["transition"]] == ["STANDARD_IA", "GLACIER_IR"]
    assert tiers["filter"][0]["prefix"] == "${local.lake_prefix}/"
    housekeeping = next(r for r in rules if r["id"] == "noncurrent-versions-and-uploads")
    assert "noncurrent_version_expiration" in housekeeping
    assert housekeeping["abort_incomplete_multipart_upload"][0]["days_after_initiation"] == 7
    deny = data("aws_iam_policy_document")["lake_bucket"]["statement"][0]
    assert deny["effect"] == "Deny" and deny["condition"][0]["variable"] == "aws:SecureTransport"


def test_postgres_has_logical_replication_encryption_and_backups() -> None:
    params = {p["name"]: p for p in resources("aws_db_parameter_group")["postgres"]["parameter"]}
    assert params["rds.logical_replication"]["value"] == "1"
    assert params["rds.logical_replication"]["apply_method"] == "pending-reboot"
    assert params["rds.force_ssl"]["value"] == "1"
    assert "max_slot_wal_keep_size" in params
    db = resources("aws_db_instance")["postgres"]
    assert db["parameter_group_name"] == "${aws_db_parameter_group.postgres.name}"
    assert db["storage_encrypted"] is True and db["publicly_accessible"] is False
    assert db["manage_master_user_password"] is True and "password" not in db
    assert db["backup_retention_period"] == "${var.postgres_backup_retention_days}"
    retention = blocks("variable")["postgres_backup_retention_days"]
    assert retention["default"] >= 7 and "validation" in retention


def test_service_role_trusts_only_the_clusters_service_account() -> None:
    trust = data("aws_iam_policy_document")["service_trust"]["statement"]
    assert len(trust) == 1
    (statement,) = trust
    assert statement["actions"] == ["sts:AssumeRoleWithWebIdentity"]
    assert statement["principals"][0] == {"type": "Federated", "identifiers": ["${var.oidc_provider_arn}"]}
    conditions = {c["variable"]: c for c in statement["condition"]}
    assert conditions["${local.oidc_issuer}:aud"]["values"] == ["sts.amazonaws.com"]
    assert conditions["${local.oidc_issuer}:sub"]["test"] == "StringEquals"
    assert "system:serviceaccount:${var.kubernetes_namespace}:${sa}" in str(conditions["${local.oidc_issuer}:sub"]["values"])
    assert resources("aws_iam_role")["service"]["assume_role_policy"] == "${data.aws_iam_policy_document.service_trust.json}"


def test_service_policy_is_least_privilege() -> None:
    statements = data("aws_iam_policy_document")["service"]["statement"]
    for s in statements:
        assert s.get("effect", "Allow") == "Allow"
        assert not any("*" in a for a in s["actions"]), s["actions"]
        assert "*" not in s["resources"], s["resources"]
        assert all("lake" in r or "kms_key" in r for r in s["resources"]), s["resources"]
    actions = {a for s in statements for a in s["actions"]}
    assert actions <= {"s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                       "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "kms:Decrypt", "kms:GenerateDataKey"}
    objects = next(s for s in statements if "s3:GetObject" in s["actions"])
    assert objects["resources"] == ["${aws_s3_bucket.lake.arn}/${local.lake_prefix}/*"]


def test_msk_is_optional() -> None:
    for name, body in resources("aws_msk_cluster").items():
        assert body["count"] == "${var.msk_enabled ? 1 : 0}", name
        assert body["encryption_info"][0]["encryption_in_transit"][0]["in_cluster"] is True
        assert body["broker_node_group_info"][0]["connectivity_info"][0]["public_access"][0]["type"] == "DISABLED"
    assert blocks("variable")["msk_enabled"]["default"] is False
    example = blocks("module", TERRAFORM / "examples" / "production")["headwater"]
    assert example["msk_enabled"] is True  # so checkov scans the cluster too


def test_every_skipped_checkov_check_is_justified() -> None:
    config = yaml.safe_load(CHECKOV_CONFIG.read_text())
    skipped = config.get("skip-check", [])
    lines = CHECKOV_CONFIG.read_text().splitlines()
    for check in skipped:
        index = next(i for i, ln in enumerate(lines) if ln.strip() == f"- {check}")
        comment = []
        for ln in reversed(lines[:index]):
            if not ln.strip().startswith("#"):
                break
            comment.insert(0, ln.strip().lstrip("# "))
        text = " ".join(comment)
        assert text.startswith(f"{check} ("), f"{check}: the comment above it must name it"
        assert len(text) >= 120, f"{check}: the justification is too thin: {text!r}"


def test_checkov_passes(checkov: str) -> None:
    result = run([checkov, "--config-file", str(CHECKOV_CONFIG.relative_to(ROOT)),
                  "-d", str(TERRAFORM.relative_to(ROOT)), "--output", "json"])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    summary = [r["summary"] for r in reports if r.get("check_type") == "terraform"]
    assert summary and summary[0]["failed"] == 0 and summary[0]["parsing_errors"] == 0
    # Every resource was scanned, MSK's too (the example enables it): 25 resources, 117 checks
    # when this was written.
    assert summary[0]["resource_count"] >= 20 and summary[0]["passed"] >= 100, summary

# The lake: Parquet datasets under s3://<bucket>/<lake_prefix>. Private, encrypted with KMS,
# versioned, TLS only, and tiered by age with lifecycle rules.

resource "aws_s3_bucket" "lake" {
  bucket        = local.bucket_name
  force_destroy = var.force_destroy
  tags          = local.tags
}

resource "aws_s3_bucket_ownership_controls" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_logging" "lake" {
  count = var.access_log_bucket == null ? 0 : 1

  bucket        = aws_s3_bucket.lake.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3/${local.bucket_name}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id

  # Storage tiers by object age: hot (STANDARD) -> warm (STANDARD_IA) -> cold (GLACIER_IR).
  rule {
    id     = "storage-tiers"
    status = "Enabled"

    filter {
      prefix = "${local.lake_prefix}/"
    }

    transition {
      days          = var.lake_warm_after_days
      storage_class = "STANDARD_IA"
    }

    transition {
      days          = var.lake_cold_after_days
      storage_class = "GLACIER_IR"
    }
  }

  # Whole bucket: old versions expire (overwrites and deletes are recoverable for a while,
  # erased data is gone after that), half-finished uploads are cleaned up.
  rule {
    id     = "noncurrent-versions-and-uploads"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.lake]

  lifecycle {
    precondition {
      condition     = var.lake_cold_after_days >= var.lake_warm_after_days + 30
      error_message = "lake_cold_after_days must be at least 30 days after lake_warm_after_days (STANDARD_IA's minimum storage duration)."
    }
  }
}

# TLS only: requests over plain HTTP are refused whatever the caller's IAM policy allows.
resource "aws_s3_bucket_policy" "lake" {
  bucket = aws_s3_bucket.lake.id
  policy = data.aws_iam_policy_document.lake_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.lake]
}

data "aws_iam_policy_document" "lake_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.lake.arn,
      "${aws_s3_bucket.lake.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

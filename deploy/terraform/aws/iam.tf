# The IAM role of the service's Kubernetes service account (IRSA): the EKS OIDC provider vouches
# for the pod's service-account token, and only the named service accounts of the namespace
# may assume the role. Its one policy reaches the lake prefix of the lake bucket and the key.

data "aws_iam_policy_document" "service_trust" {
  statement {
    sid     = "EksServiceAccount"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = [for sa in var.kubernetes_service_accounts : "system:serviceaccount:${var.kubernetes_namespace}:${sa}"]
    }
  }
}

resource "aws_iam_role" "service" {
  name                 = "${var.name}-service"
  description          = "Headwater service pods (IRSA: ${var.kubernetes_namespace}/${join(",", var.kubernetes_service_accounts)})"
  assume_role_policy   = data.aws_iam_policy_document.service_trust.json
  max_session_duration = 3600
  tags                 = local.tags
}

data "aws_iam_policy_document" "service" {
  # Listing, only under the lake prefix.
  statement {
    sid       = "ListLake"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.lake_prefix, "${local.lake_prefix}/*"]
    }
  }

  statement {
    sid       = "LocateLake"
    actions   = ["s3:GetBucketLocation"]
    resources = [aws_s3_bucket.lake.arn]
  }

  # Datasets are Parquet files plus a manifest written in one PUT; overwrite and retention
  # delete files; erasure rewrites them.
  statement {
    sid = "ReadWriteLakeObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.lake.arn}/${local.lake_prefix}/*"]
  }

  # SSE-KMS: reading needs Decrypt, writing needs GenerateDataKey, only through S3.
  statement {
    sid       = "UseLakeKeyThroughS3"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_policy" "service" {
  name        = "${var.name}-service-lake"
  description = "Headwater service: read and write the lake prefix of ${local.bucket_name}"
  policy      = data.aws_iam_policy_document.service.json
  tags        = local.tags
}

resource "aws_iam_role_policy_attachment" "service" {
  role       = aws_iam_role.service.name
  policy_arn = aws_iam_policy.service.arn
}

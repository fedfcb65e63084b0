output "lake_bucket_name" {
  description = "Name of the lake bucket."
  value       = aws_s3_bucket.lake.bucket
}

output "lake_bucket_arn" {
  description = "ARN of the lake bucket."
  value       = aws_s3_bucket.lake.arn
}

output "lake_root" {
  description = "Root of the parquet store for headwater.yaml (stores.<lake>.root)."
  value       = "s3://${aws_s3_bucket.lake.bucket}/${local.lake_prefix}"
}

output "kms_key_arn" {
  description = "KMS key encrypting the bucket, the database, Kafka and the logs."
  value       = local.kms_key_arn
}

output "postgres_endpoint" {
  description = "host:port of the Postgres instance (for the DSNs in the Kubernetes Secret)."
  value       = aws_db_instance.postgres.endpoint
}

output "postgres_address" {
  description = "Host name of the Postgres instance."
  value       = aws_db_instance.postgres.address
}

output "postgres_database_name" {
  description = "The initial database."
  value       = aws_db_instance.postgres.db_name
}

output "postgres_master_user_secret_arn" {
  description = "Secrets Manager secret holding the master user's generated password (use it once to create Headwater's own roles)."
  value       = aws_db_instance.postgres.master_user_secret[0].secret_arn
}

output "postgres_security_group_id" {
  description = "Security group of the Postgres instance."
  value       = aws_security_group.postgres.id
}

output "service_role_arn" {
  description = "IAM role for the service account: the value of its eks.amazonaws.com/role-arn annotation."
  value       = aws_iam_role.service.arn
}

output "msk_bootstrap_brokers" {
  description = "Plaintext bootstrap brokers for events.bus = kafka://<this> (null when MSK is off or plaintext is disabled)."
  value       = var.msk_enabled && var.msk_client_broker_encryption != "TLS" ? aws_msk_cluster.this[0].bootstrap_brokers : null
}

output "msk_bootstrap_brokers_tls" {
  description = "TLS bootstrap brokers (null when MSK is off or TLS is disabled)."
  value       = var.msk_enabled && var.msk_client_broker_encryption != "PLAINTEXT" ? aws_msk_cluster.this[0].bootstrap_brokers_tls : null
}

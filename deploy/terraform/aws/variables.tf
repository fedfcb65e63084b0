# ---------------------------------------------------------------------------------------------
# Naming and tags
# ---------------------------------------------------------------------------------------------
variable "name" {
  description = "Prefix of every resource name (e.g. \"headwater-prod\"). Lower case, digits and hyphens."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,40}$", var.name))
    error_message = "name must be 3-41 characters of lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------
variable "vpc_id" {
  description = "VPC of the EKS cluster; RDS and MSK are placed in it."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (at least two, in different availability zones) for RDS and MSK."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "private_subnet_ids needs at least two subnets in different availability zones."
  }
}

variable "client_security_group_ids" {
  description = "Security groups of the pods or nodes running Headwater (e.g. the EKS node or pod security group); only they may reach Postgres and Kafka."
  type        = list(string)
}

# ---------------------------------------------------------------------------------------------
# Encryption
# ---------------------------------------------------------------------------------------------
variable "kms_key_arn" {
  description = "Customer-managed KMS key for S3, RDS, Performance Insights, MSK and logs. Null: the module creates one (with rotation)."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------------------------
# Lake bucket (S3)
# ---------------------------------------------------------------------------------------------
variable "lake_bucket_name" {
  description = "Name of the lake bucket. Null: \"<name>-lake-<account id>\"."
  type        = string
  default     = null
}

variable "lake_prefix" {
  description = "Key prefix of the lake inside the bucket (the parquet store's root is s3://<bucket>/<prefix>)."
  type        = string
  default     = "lake"
}

variable "lake_warm_after_days" {
  description = "Storage tier warm: lake objects move from STANDARD (hot) to STANDARD_IA this many days after they were written (S3's minimum is 30)."
  type        = number
  default     = 30

  validation {
    condition     = var.lake_warm_after_days >= 30
    error_message = "lake_warm_after_days must be at least 30 (S3's minimum for STANDARD_IA)."
  }
}

variable "lake_cold_after_days" {
  description = "Storage tier cold: lake objects move to GLACIER_IR (still read in milliseconds, so queries keep working) this many days after they were written."
  type        = number
  default     = 180
}

variable "noncurrent_version_expiration_days" {
  description = "Days an overwritten or deleted object version is kept (versioning protects against bad writes; this bounds its cost). Erasure requests are complete only after this."
  type        = number
  default     = 30
}

variable "access_log_bucket" {
  description = "Existing bucket receiving S3 server access logs of the lake bucket (null: no access logs; CloudTrail data events are the alternative)."
  type        = string
  default     = null
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete a non-empty lake bucket. Keep false in production."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------
# Postgres (RDS)
# ---------------------------------------------------------------------------------------------
variable "postgres_engine_version" {
  description = "RDS PostgreSQL engine version (major.minor)."
  type        = string
  default     = "16.4"
}

variable "postgres_parameter_group_family" {
  description = "Parameter group family matching postgres_engine_version's major version."
  type        = string
  default     = "postgres16"
}

variable "postgres_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.r6g.large"
}

variable "postgres_allocated_storage_gb" {
  description = "Initial storage in GiB."
  type        = number
  default     = 100
}

variable "postgres_max_allocated_storage_gb" {
  description = "Upper bound for storage autoscaling in GiB (logical replication slots retain WAL while CDC lags)."
  type        = number
  default     = 1000
}

variable "postgres_database_name" {
  description = "Initial database, holding the transactional store and Headwater's metadata."
  type        = string
  default     = "headwater"
}

variable "postgres_master_username" {
  description = "Master user name; its password is generated and kept in Secrets Manager by RDS (never in Terraform state)."
  type        = string
  default     = "headwater_admin"
}

variable "postgres_multi_az" {
  description = "Run a standby in a second availability zone."
  type        = bool
  default     = true
}

variable "postgres_backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery window)."
  type        = number
  default     = 14

  validation {
    condition     = var.postgres_backup_retention_days >= 7 && var.postgres_backup_retention_days <= 35
    error_message = "postgres_backup_retention_days must be between 7 and 35."
  }
}

variable "postgres_deletion_protection" {
  description = "Refuse to delete the database instance."
  type        = bool
  default     = true
}

variable "postgres_max_replication_slots" {
  description = "max_replication_slots and max_wal_senders: one slot per CDC connector, plus headroom for resnapshots."
  type        = number
  default     = 10
}

variable "postgres_monitoring_interval" {
  description = "Enhanced Monitoring interval in seconds (0 disables it)."
  type        = number
  default     = 60
}

# ---------------------------------------------------------------------------------------------
# IAM role for the service account (IRSA)
# ---------------------------------------------------------------------------------------------
variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider (aws_iam_openid_connect_provider)."
  type        = string
}

variable "oidc_provider_url" {
  description = "Issuer URL of the EKS cluster's OIDC provider, with or without https:// (e.g. oidc.eks.eu-west-1.amazonaws.com/id/ABC123)."
  type        = string
}

variable "kubernetes_namespace" {
  description = "Namespace the Headwater service runs in."
  type        = string
  default     = "headwater"
}

variable "kubernetes_service_accounts" {
  description = "Service accounts allowed to assume the role (the kustomize base names the service's `headwater`)."
  type        = list(string)
  default     = ["headwater"]
}

# ---------------------------------------------------------------------------------------------
# Kafka (MSK), optional
# ---------------------------------------------------------------------------------------------
variable "msk_enabled" {
  description = "Create an MSK cluster for the event bus (false: use NATS or an existing Kafka)."
  type        = bool
  default     = false
}

variable "msk_kafka_version" {
  description = "Kafka version of the MSK cluster."
  type        = string
  default     = "3.6.0"
}

variable "msk_broker_instance_type" {
  description = "MSK broker instance type."
  type        = string
  default     = "kafka.m5.large"
}

variable "msk_broker_count" {
  description = "Number of brokers; a multiple of the number of private subnets."
  type        = number
  default     = 3
}

variable "msk_broker_volume_gb" {
  description = "EBS volume per broker in GiB."
  type        = number
  default     = 500
}

variable "msk_client_broker_encryption" {
  description = "Encryption between clients and brokers: TLS, TLS_PLAINTEXT or PLAINTEXT. Headwater's kafka:// bus connects in plaintext today, so the default keeps both listeners (the cluster is reachable only from client_security_group_ids)."
  type        = string
  default     = "TLS_PLAINTEXT"

  validation {
    condition     = contains(["TLS", "TLS_PLAINTEXT", "PLAINTEXT"], var.msk_client_broker_encryption)
    error_message = "msk_client_broker_encryption must be TLS, TLS_PLAINTEXT or PLAINTEXT."
  }
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups this module creates (MSK broker logs)."
  type        = number
  default     = 365
}

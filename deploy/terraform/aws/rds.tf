# Postgres for the transactional store and Headwater's metadata (catalog, policies, audit,
# lineage, registry). Logical replication is on, so `headwater cdc start` can stream changes.

resource "aws_db_subnet_group" "postgres" {
  name        = "${var.name}-postgres"
  description = "Headwater Postgres (${var.name})"
  subnet_ids  = var.private_subnet_ids
  tags        = local.tags
}

resource "aws_security_group" "postgres" {
  name        = "${var.name}-postgres"
  description = "Headwater Postgres: reachable from the Headwater pods only"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "postgres" {
  for_each = toset(var.client_security_group_ids)

  security_group_id            = aws_security_group.postgres.id
  description                  = "Postgres from Headwater (${each.value})"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  tags                         = local.tags
}

resource "aws_db_parameter_group" "postgres" {
  name        = "${var.name}-postgres"
  family      = var.postgres_parameter_group_family
  description = "Headwater: logical replication for CDC, TLS only, slow-query and DDL logging"
  tags        = local.tags

  # wal_level = logical on RDS; static, so it applies at the next reboot.
  parameter {
    name         = "rds.logical_replication"
    value        = "1"
    apply_method = "pending-reboot"
  }

  parameter {
    name         = "max_replication_slots"
    value        = tostring(var.postgres_max_replication_slots)
    apply_method = "pending-reboot"
  }

  parameter {
    name         = "max_wal_senders"
    value        = tostring(var.postgres_max_replication_slots)
    apply_method = "pending-reboot"
  }

  # A stalled connector must not fill the disk with retained WAL: past this the slot is
  # invalidated (`headwater cdc status` shows wal_status lost) and CDC re-snapshots.
  parameter {
    name  = "max_slot_wal_keep_size"
    value = "51200"
  }

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_db_instance" "postgres" {
  identifier     = "${var.name}-postgres"
  engine         = "postgres"
  engine_version = var.postgres_engine_version
  instance_class = var.postgres_instance_class
  db_name        = var.postgres_database_name
  username       = var.postgres_master_username
  # RDS generates the master password and keeps it in Secrets Manager (rotated, encrypted with
  # the module's key); it never enters Terraform state.
  manage_master_user_password   = true
  master_user_secret_kms_key_id = local.kms_key_arn

  parameter_group_name   = aws_db_parameter_group.postgres.name
  db_subnet_group_name   = aws_db_subnet_group.postgres.name
  vpc_security_group_ids = [aws_security_group.postgres.id]
  publicly_accessible    = false
  multi_az               = var.postgres_multi_az
  port                   = 5432

  storage_type          = "gp3"
  allocated_storage     = var.postgres_allocated_storage_gb
  max_allocated_storage = var.postgres_max_allocated_storage_gb
  storage_encrypted     = true
  kms_key_id            = local.kms_key_arn

  backup_retention_period   = var.postgres_backup_retention_days
  backup_window             = "02:00-03:00"
  maintenance_window        = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot     = true
  delete_automated_backups  = false
  deletion_protection       = var.postgres_deletion_protection
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-postgres-final"

  auto_minor_version_upgrade          = true
  iam_database_authentication_enabled = true
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = local.kms_key_arn
  performance_insights_retention_period = 7

  monitoring_interval = var.postgres_monitoring_interval
  monitoring_role_arn = var.postgres_monitoring_interval > 0 ? aws_iam_role.rds_monitoring[0].arn : null

  tags = local.tags
}

# Enhanced Monitoring publishes OS metrics through this role.
resource "aws_iam_role" "rds_monitoring" {
  count = var.postgres_monitoring_interval > 0 ? 1 : 0

  name               = "${var.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_trust.json
  tags               = local.tags
}

data "aws_iam_policy_document" "rds_monitoring_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  count = var.postgres_monitoring_interval > 0 ? 1 : 0

  role       = aws_iam_role.rds_monitoring[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

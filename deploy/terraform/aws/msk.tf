# Optional Kafka (MSK) for the event bus: created only when msk_enabled is true.

resource "aws_security_group" "msk" {
  count = var.msk_enabled ? 1 : 0

  name        = "${var.name}-msk"
  description = "Headwater Kafka: reachable from the Headwater pods only"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "msk" {
  for_each = var.msk_enabled ? toset(var.client_security_group_ids) : toset([])

  security_group_id            = aws_security_group.msk[0].id
  description                  = "Kafka (plaintext 9092, TLS 9094) from Headwater (${each.value})"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 9092
  to_port                      = 9094
  tags                         = local.tags
}

resource "aws_cloudwatch_log_group" "msk" {
  count = var.msk_enabled ? 1 : 0

  name              = "/headwater/${var.name}/msk"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

resource "aws_msk_configuration" "this" {
  count = var.msk_enabled ? 1 : 0

  name           = "${var.name}-kafka"
  kafka_versions = [var.msk_kafka_version]
  # Headwater creates its topics itself (with the registry's settings); three replicas, two
  # in sync, survive the loss of one broker without losing acknowledged events.
  server_properties = <<-EOT
    auto.create.topics.enable=false
    default.replication.factor=3
    min.insync.replicas=2
    unclean.leader.election.enable=false
  EOT
}

resource "aws_msk_cluster" "this" {
  count = var.msk_enabled ? 1 : 0

  cluster_name           = "${var.name}-kafka"
  kafka_version          = var.msk_kafka_version
  number_of_broker_nodes = var.msk_broker_count

  broker_node_group_info {
    instance_type   = var.msk_broker_instance_type
    client_subnets  = var.private_subnet_ids
    security_groups = [aws_security_group.msk[0].id]

    storage_info {
      ebs_storage_info {
        volume_size = var.msk_broker_volume_gb
      }
    }

    connectivity_info {
      public_access {
        type = "DISABLED"
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this[0].arn
    revision = aws_msk_configuration.this[0].latest_revision
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = local.kms_key_arn
    encryption_in_transit {
      client_broker = var.msk_client_broker_encryption
      in_cluster    = true
    }
  }

  client_authentication {
    unauthenticated = true
  }

  enhanced_monitoring = "PER_TOPIC_PER_BROKER"

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.msk[0].name
      }
    }
  }

  tags = local.tags
}

# A complete use of the module: the lake, RDS Postgres, the IRSA role and MSK for an existing EKS
# cluster. `terraform init && terraform apply -var-file=prod.tfvars`, then copy the outputs
# into the production kustomize overlay (see docs/deployment.md).

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  description = "AWS region of the cluster."
  type        = string
  default     = "eu-west-1"
}

variable "vpc_id" {
  description = "VPC of the EKS cluster."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets of the cluster's VPC, in at least two availability zones."
  type        = list(string)
}

variable "cluster_security_group_id" {
  description = "Security group of the EKS nodes (or of the Headwater pods, with security groups for pods)."
  type        = string
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider."
  type        = string
}

variable "oidc_provider_url" {
  description = "Issuer URL of the cluster's OIDC provider."
  type        = string
}

module "headwater" {
  source = "../../aws"

  name                      = "headwater-prod"
  vpc_id                    = var.vpc_id
  private_subnet_ids        = var.private_subnet_ids
  client_security_group_ids = [var.cluster_security_group_id]
  oidc_provider_arn         = var.oidc_provider_arn
  oidc_provider_url         = var.oidc_provider_url
  kubernetes_namespace      = "headwater"
  msk_enabled               = true

  tags = {
    team = "data-platform"
  }
}

output "service_role_arn" {
  description = "Annotate the `headwater` ServiceAccount with this (eks.amazonaws.com/role-arn)."
  value       = module.headwater.service_role_arn
}

output "lake_root" {
  description = "stores.lake.root in headwater.yaml."
  value       = module.headwater.lake_root
}

output "postgres_endpoint" {
  description = "Host and port for the DSNs in the `headwater-secrets` Secret."
  value       = module.headwater.postgres_endpoint
}

output "msk_bootstrap_brokers" {
  description = "events.bus in headwater.yaml: kafka://<this>."
  value       = module.headwater.msk_bootstrap_brokers
}

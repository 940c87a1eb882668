"""smq's built-in AWS service integrations (the `smq[aws]` extra, boto3): `aws-sdk:*` and the optimized
integrations published definitions use most. See `provider.AwsIntegrations`; importing this package
does not import boto3."""

from smq.integrations.aws.provider import AwsIntegrations

__all__ = ["AwsIntegrations"]

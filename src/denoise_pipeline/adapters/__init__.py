"""Adapters: where the pipeline touches AWS (DynamoDB, S3, SQS, EventBridge, Secrets Manager) and HTTP (MusicGPT,
output downloads). Each wraps one outside system behind methods in the domain's terms; none imports a workflow."""

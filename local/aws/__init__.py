"""Emulated AWS: the template's resources on moto, with IAM enforced."""

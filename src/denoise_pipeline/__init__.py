"""S3 → MusicGPT denoise → S3 pipeline: Lambda code (handlers, services, adapters)."""

"""Workflows: the pipeline's steps as plain functions over their collaborators (passed in, never built here).

submit (an upload becomes one provider job), callback (a provider result is recorded), copy (outputs land in the
output bucket), reconcile (stuck jobs are settled), lifecycle (what each does when a job ends or leaves the
provider). They return domain results and raise domain exceptions; HTTP is the handlers' business.
"""

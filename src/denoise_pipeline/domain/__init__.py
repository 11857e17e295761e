"""The domain: jobs and their states, source objects, outputs, provider outcomes, callback results, webhook tokens.

Plain values and rules only: nothing here touches AWS or HTTP, and nothing here imports another part of the package.
"""

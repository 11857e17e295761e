"""The Lambda emulator: runtime assets, Runtime API, execution environments, function pools.

Each invocation runs the `sam build` artifact in its own OS process under the real runtime interface client
(awslambdaric), against a local Runtime API, with the Lambda runtime's Python and SDK and nothing of the dev venv.
"""

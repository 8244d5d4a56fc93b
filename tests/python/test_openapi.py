"""The OpenAPI document describes the API as it is: schemathesis (every check)
against `/openapi.json` on `switchboard dev`.

Requests it generates from the document must be accepted unless they are
refused for a reason the document lists; requests that break the document must
be refused; every status, header and body answered must be the document's.
The examples are bounded and the seed fixed, so a run is reproducible:
`st run <url>/openapi.json -H 'Authorization: Bearer <token>' --checks all
--max-examples 30 --seed 1` against any `switchboard dev`.
"""

import os
import subprocess
import sys
import tempfile
import unittest

from test_python_client import Server

API_KEY = "openapi-sync-key"
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemathesis.toml")
EXAMPLES = "30"
SEED = "1"


def schemathesis(url: str, credential: str, *extra: str) -> subprocess.CompletedProcess:
    st = os.path.join(os.path.dirname(sys.executable), "st")
    command = [
        st, "--config-file", CONFIG, "run", f"{url}/openapi.json",
        "--header", f"Authorization: Bearer {credential}",
        "--checks", "all",
        "--max-examples", EXAMPLES,
        "--seed", SEED,
        "--no-color",
        *extra,
    ]
    # Its own folder: schemathesis writes a cache where it runs.
    with tempfile.TemporaryDirectory(prefix="switchboard-openapi-") as cwd:
        return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd)


class OpenApiDocumentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(
            {
                "SWITCHBOARD_SYNC_API_KEYS": f"openapi-tenant={API_KEY}",
                "SWITCHBOARD_WA_APP_SECRET": "openapi-app-secret",
                "SWITCHBOARD_WA_VERIFY_TOKEN": "openapi-verify-token",
                # The session rate stays on (429 is documented), high enough that the logic behind it is reached.
                "SWITCHBOARD_WIDGET_SESSION_RATE": "100000",
            }
        )

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def assertClean(self, run: subprocess.CompletedProcess):
        report = run.stdout + run.stderr
        self.assertEqual(run.returncode, 0, f"schemathesis found problems:\n{report[-20000:]}")
        self.assertRegex(report, r"\d+ generated", "schemathesis generated no test case")

    def test_every_operation_with_a_service_token(self):
        token = self.server.token("openapi-service", "service", "OpenAPI checks")
        self.assertClean(schemathesis(self.server.url, token))

    def test_the_sync_operations_with_the_tenant_api_key(self):
        self.assertClean(schemathesis(self.server.url, API_KEY, "--include-path-regex", "^/sync/(pull-changes|confirm)$"))


if __name__ == "__main__":
    unittest.main()

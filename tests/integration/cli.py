"""`smq` run in this process by click's runner against one database, with none of the caller's SMQ_*
settings leaking in: the integration tests' way to drive the CLI."""

from __future__ import annotations

import json
import os
from typing import Any

from click.testing import CliRunner, Result

from smq.cli import main


class Smq:
    """Call as `smq("executions", "list", expect=0, SMQ_X="...")`: asserts the exit code, returns the
    result (stdout and stderr apart)."""

    def __init__(self, url: str) -> None:
        self.env: dict[str, str | None] = {key: None for key in os.environ if key.startswith("SMQ_")}
        self.env["SMQ_DATABASE_URL"] = url

    def __call__(self, *args: str, expect: int = 0, **env: str) -> Result:
        result = CliRunner().invoke(
            main, list(args), env={**self.env, **env}, catch_exceptions=False, prog_name="smq"
        )
        assert result.exit_code == expect, (args, result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        """The command's `--json` output, parsed."""
        return json.loads(self(*args, "--json").stdout)

"""`smq definitions graph`: a stored definition or a file, as SVG, DOT or Mermaid, with the path an
execution took (real subprocesses, a private SQLite file)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SVG = "{http://www.w3.org/2000/svg}"


def smq(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SMQ_DATABASE_URL": database}
    return subprocess.run(
        [sys.executable, "-m", "smq.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_graph_of_a_file_a_stored_definition_and_an_execution(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'smq.db'}"
    definition = EXAMPLES / "retry_catch.json"
    svg = smq(database, "definitions", "graph", str(definition))
    assert svg.returncode == 0, svg.stderr
    texts = {element.text for element in ET.fromstring(svg.stdout).iter(f"{SVG}text")}
    assert {"LookUpStockLevels", "ReserveStock", "CreateBackorder", "catch Inventory.OutOfStock"} <= texts
    assert smq(database, "definitions", "put", str(definition), "--id", "rc").returncode == 0
    # An execution that fails at its first state (its input lacks $.warehouse).
    run = smq(
        database,
        "run",
        str(definition),
        "--input",
        "{}",
        "--name",
        "bad",
        "--handlers",
        str(EXAMPLES / "handlers.py"),
    )
    assert run.returncode == 1, run.stderr
    dot = smq(
        database, "definitions", "graph", "retry_catch", "--execution", "retry_catch/bad", "--format", "dot"
    )
    assert dot.returncode == 0, dot.stderr
    assert dot.stdout.startswith("digraph smq {")
    (first,) = [line for line in dot.stdout.splitlines() if "LookUpStockLevels" in line]
    assert 'color="#b91c1c"' in first  # failed: red
    out = tmp_path / "rc.mmd"
    mermaid = smq(database, "definitions", "graph", "rc", "--format", "mermaid", "-o", str(out))
    assert mermaid.returncode == 0 and mermaid.stdout == ""
    assert out.read_text().startswith("flowchart TD") and "catch Inventory.OutOfStock" in out.read_text()


def test_graph_names_what_is_wrong(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'smq.db'}"
    missing = smq(database, "definitions", "graph", "nope")
    assert missing.returncode == 2 and "nope" in missing.stderr
    fmt = smq(database, "definitions", "graph", str(EXAMPLES / "payment.json"), "--format", "png")
    assert fmt.returncode == 2 and "--format" in fmt.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"StartAt": "X", "States": {"Y": {"Type": "Pass", "End": true}}}')
    invalid = smq(database, "definitions", "graph", str(bad))
    assert invalid.returncode == 2 and "X" in invalid.stderr
    execution = smq(database, "definitions", "graph", str(EXAMPLES / "payment.json"), "--execution", "p/none")
    assert execution.returncode == 2 and "--execution" in execution.stderr

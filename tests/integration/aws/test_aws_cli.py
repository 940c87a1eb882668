"""The `smq` command with the built-in integrations, as a user runs it: a subprocess that finds moto
through boto3's own per-service endpoint variables (`AWS_ENDPOINT_URL_<SERVICE>`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.aws.moto_server import Moto, unique

ORDER_FLOW = {
    "StartAt": "Save",
    "States": {
        "Save": {
            "Type": "Task",
            "Resource": "arn:aws:states:::dynamodb:putItem",
            "Parameters": {"TableName.$": "$.table", "Item": {"pk": {"S.$": "$.order"}}},
            "ResultPath": None,
            "Next": "Notify",
        },
        "Notify": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage",
            "Parameters": {"QueueUrl.$": "$.queue", "MessageBody": {"saved.$": "$.order"}},
            "ResultSelector": {"id.$": "$.MessageId"},
            "ResultPath": "$.message",
            "End": True,
        },
    },
}


def smq(tmp_path: Path, moto: Moto, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SMQ_", "AWS_"))}
    clean.update(moto.environment())
    del clean["AWS_ENDPOINT_URL"]  # one endpoint per service instead, as for LocalStack or moto
    clean.update(
        AWS_ENDPOINT_URL_DYNAMODB=moto.url,
        AWS_ENDPOINT_URL_SQS=moto.url,
        SMQ_DATABASE_URL=f"sqlite:///{tmp_path / 'smq.db'}",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "smq.cli", *args], capture_output=True, text=True, timeout=60, env=clean
    )


def test_smq_run_calls_aws_with_boto3s_own_endpoint_settings(tmp_path: Path, moto: Moto) -> None:
    table = moto.table("orders")
    queue = moto.client("sqs").create_queue(QueueName=unique("q"))["QueueUrl"]
    definition = tmp_path / "orders.json"
    definition.write_text(json.dumps(ORDER_FLOW))
    run_input = json.dumps({"table": table, "queue": queue, "order": "o-1"})

    done = smq(tmp_path, moto, "run", str(definition), "--input", run_input, "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["status"] == "SUCCEEDED"
    message = moto.client("sqs").receive_message(QueueUrl=queue)["Messages"][0]
    assert body["output"]["message"] == {"id": message["MessageId"]}
    assert json.loads(message["Body"]) == {"saved": "o-1"}
    assert moto.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": "o-1"}})["Item"] == {
        "pk": {"S": "o-1"}
    }

    off = smq(tmp_path, moto, "run", str(definition), "--input", run_input, SMQ_AWS_INTEGRATIONS="off")
    assert off.returncode == 2
    assert "no handler registered for resource 'arn:aws:states:::dynamodb:putItem'" in off.stderr
    assert "smq's built-in AWS integrations are off (SMQ_AWS_INTEGRATIONS=off)" in off.stderr


def test_smq_validate_notes_what_no_built_in_serves(tmp_path: Path, moto: Moto) -> None:
    definition = tmp_path / "mixed.json"
    definition.write_text(
        json.dumps(
            {
                "StartAt": "A",
                "States": {
                    "A": {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:putItem", "Next": "B"},
                    "B": {
                        "Type": "Task",
                        "Resource": "arn:aws:states:::aws-sdk:dynamodb:putItm",
                        "Next": "C",
                    },
                    "C": {"Type": "Task", "Resource": "arn:aws:states:::glue:startJobRun", "Next": "D"},
                    "D": {"Type": "Task", "Resource": "my-own-handler", "End": True},
                },
            }
        )
    )
    checked = smq(tmp_path, moto, "validate", str(definition))
    assert checked.returncode == 0
    assert checked.stdout == f"{definition}: valid\n"
    assert checked.stderr.splitlines() == [
        "  note: States.B.Resource: 'arn:aws:states:::aws-sdk:dynamodb:putItm': aws-sdk:dynamodb has no API named 'putItm'",
        "  note: States.C.Resource: 'arn:aws:states:::glue:startJobRun': smq has no built-in integration for "
        "'glue:startJobRun': register a handler under that name",
    ]
    off = smq(tmp_path, moto, "validate", str(definition), SMQ_AWS_INTEGRATIONS="off")
    assert off.returncode == 0
    assert (
        "States.A.Resource: 'arn:aws:states:::dynamodb:putItem': smq's built-in AWS integrations are off"
        in off.stderr
    )

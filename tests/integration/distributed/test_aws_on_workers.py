"""The built-in AWS integrations on real workers: a worker installs them at boot (SMQ_AWS_INTEGRATIONS
is `auto` and boto3 is there) and finds moto through boto3's own AWS_ENDPOINT_URL; an
`sqs:sendMessage.waitForTaskToken` parks without holding the worker until `smq task success` answers
with the token the message carried."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.integration.aws.moto_server import Moto, unique
from tests.integration.distributed.harness import Db, Worker, run_smq, smq_env, smq_json, wait_until

ORDER = {
    "StartAt": "Save",
    "States": {
        "Save": {
            "Type": "Task",
            "Resource": "arn:aws:states:::dynamodb:putItem",
            "Parameters": {"TableName.$": "$.table", "Item": {"pk": {"S.$": "$.order"}}},
            "ResultSelector": {"status.$": "$.SdkHttpMetadata.HttpStatusCode"},
            "ResultPath": "$.saved",
            "Next": "Approve",
        },
        "Approve": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {
                "QueueUrl.$": "$.queue",
                "MessageBody": {"order.$": "$.order", "token.$": "$$.Task.Token"},
            },
            "ResultPath": "$.approval",
            "End": True,
        },
    },
}


def test_a_worker_calls_aws_and_parks_on_the_queues_token(
    db: Db, broker_url: str, start_worker: Callable[..., Worker], moto: Moto, tmp_path: Path
) -> None:
    table = moto.table("orders")
    queue = moto.client("sqs").create_queue(QueueName=unique("approvals"))["QueueUrl"]
    env = {**smq_env(db.url, broker_url), **moto.environment()}
    worker = start_worker("w1", env)
    definition = tmp_path / "order.json"
    definition.write_text(json.dumps(ORDER))
    run_smq(["definitions", "put", str(definition), "--id", "AWSORDER"], env)
    smq_json(
        [
            "start",
            "AWSORDER",
            "--name",
            "o-1",
            "--input",
            json.dumps({"table": table, "queue": queue, "order": "o-1"}),
        ],
        env,
    )

    def status() -> str:
        rows = db.rows("SELECT status FROM smq_executions WHERE name = 'o-1'")
        return str(rows[0].status) if rows else "none"

    wait_until(
        lambda: status() == "WAITING", timeout=30, what="the execution to park on its token", workers=[worker]
    )
    message = moto.client("sqs").receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"][0]
    body = json.loads(message["Body"])
    assert moto.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": "o-1"}})["Item"] == {
        "pk": {"S": "o-1"}
    }

    run_smq(["task", "success", body["token"], "--output", '{"approved": true}'], env)
    wait_until(
        lambda: status() == "SUCCEEDED", timeout=30, what="the answered execution to end", workers=[worker]
    )
    (row,) = db.rows("SELECT output FROM smq_executions WHERE name = 'o-1'")
    assert row.output == {
        "table": table,
        "queue": queue,
        "order": "o-1",
        "saved": {"status": 200},
        "approval": {"approved": True},
    }

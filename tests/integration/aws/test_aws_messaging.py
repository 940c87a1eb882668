"""SQS SendMessage (and its `.waitForTaskToken` round trip), SNS Publish and EventBridge PutEvents
through the optimized integrations, on moto: what the state machine sends is read back from the
queue it lands in."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from smq import Operations, Repository, Settings, StartRequest, start_execution
from tests.integration.aws.moto_server import Moto, assert_sdk_metadata, one_task, run, unique

SEND = "arn:aws:states:::sqs:sendMessage"
PUBLISH = "arn:aws:states:::sns:publish"
PUT_EVENTS = "arn:aws:states:::events:putEvents"


def make_queue(moto: Moto) -> tuple[str, str]:
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=unique("q"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def receive_one(moto: Moto, queue_url: str) -> dict[str, Any]:
    messages = moto.client("sqs").receive_message(QueueUrl=queue_url, WaitTimeSeconds=2).get("Messages", [])
    assert len(messages) == 1, messages
    return messages[0]


def test_send_message_sends_a_json_body_as_its_text(moto: Moto) -> None:
    queue_url, _ = make_queue(moto)
    sm = one_task(
        SEND, Parameters={"QueueUrl": queue_url, "MessageBody": {"order.$": "$.order", "n": [1, 2]}}
    )
    result = run(sm, moto.registry(), {"order": "o-1"})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    message = receive_one(moto, queue_url)
    assert message["Body"] == '{"order":"o-1","n":[1,2]}'
    out = result.output
    assert out["MessageId"] == message["MessageId"]
    assert out["MD5OfMessageBody"] == hashlib.md5(message["Body"].encode()).hexdigest()
    assert_sdk_metadata(out)


def test_send_message_to_a_missing_queue_is_named_as_aws(moto: Moto) -> None:
    queue_url, _ = make_queue(moto)
    result = run(
        one_task(SEND, Parameters={"QueueUrl": queue_url + "-gone", "MessageBody": "x"}), moto.registry()
    )
    assert (result.status, result.error) == ("FAILED", "SQS.QueueDoesNotExistException")
    assert (
        "(Service: AmazonSQS; Status Code: 400; Error Code: AWS.SimpleQueueService.NonExistentQueue;"
        in result.cause
    )


WAIT_FOR_ANSWER = {
    "StartAt": "Ask",
    "States": {
        "Ask": {
            "Type": "Task",
            "Resource": SEND + ".waitForTaskToken",
            "Parameters": {
                "QueueUrl.$": "$.queue",
                "MessageBody": {"order.$": "$.order", "TaskToken.$": "$$.Task.Token"},
            },
            "ResultPath": "$.answer",
            "Catch": [{"ErrorEquals": ["Order.Rejected"], "ResultPath": "$.rejected", "Next": "Rejected"}],
            "End": True,
        },
        "Rejected": {"Type": "Pass", "End": True},
    },
}


@pytest.mark.parametrize("answer", ["success", "failure"])
def test_wait_for_task_token_round_trip_through_the_queue(moto: Moto, sqlite_url: str, answer: str) -> None:
    """The token goes out in the message body as the definition put it, the execution parks; whoever
    reads the queue answers with that token (`smq task success/failure`), and the execution goes on."""
    queue_url, _ = make_queue(moto)
    registry = moto.registry()
    repository = Repository.open(sqlite_url)
    repository.put_definition("approve", WAIT_FOR_ANSWER)
    parked = start_execution(
        repository,
        StartRequest("approve", {"queue": queue_url, "order": "o-9"}, name="o-9"),
        handlers=registry,
    )
    assert parked.status == "WAITING"

    body = json.loads(receive_one(moto, queue_url)["Body"])  # the worker on the other side of the queue
    assert body["order"] == "o-9"
    operations = Operations(repository, Settings(database_url=sqlite_url), handlers=registry)
    if answer == "success":
        resumed = operations.task_success(body["TaskToken"], {"approved": True})
    else:
        resumed = operations.task_failure(body["TaskToken"], "Order.Rejected", "out of stock")
    assert resumed.matched

    done = repository.get_execution(parked.execution_id)
    assert done.status == "SUCCEEDED"
    if answer == "success":
        assert done.output == {"queue": queue_url, "order": "o-9", "answer": {"approved": True}}
    else:
        assert done.output["rejected"] == {"Error": "Order.Rejected", "Cause": "out of stock"}
    assert moto.client("sqs").receive_message(QueueUrl=queue_url).get("Messages") is None  # sent once


def test_publish_reaches_a_subscribed_queue(moto: Moto) -> None:
    sns = moto.client("sns")
    topic = sns.create_topic(Name=unique("topic"))["TopicArn"]
    queue_url, queue_arn = make_queue(moto)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    sm = one_task(
        PUBLISH, Parameters={"TopicArn": topic, "Message": {"order.$": "$.order"}, "Subject": "new"}
    )
    result = run(sm, moto.registry(), {"order": "o-3"})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    notification = json.loads(receive_one(moto, queue_url)["Body"])
    assert notification["Message"] == '{"order":"o-3"}'
    assert notification["MessageId"] == result.output["MessageId"]
    assert_sdk_metadata(result.output)


def test_publish_to_a_missing_topic_is_named_as_aws(moto: Moto) -> None:
    topic = moto.client("sns").create_topic(Name=unique("topic"))["TopicArn"]
    result = run(one_task(PUBLISH, Parameters={"TopicArn": topic + "-gone", "Message": "x"}), moto.registry())
    assert (result.status, result.error) == ("FAILED", "SNS.NotFoundException")
    assert "(Service: AmazonSNS; Status Code: 404; Error Code: NotFound; Request ID: " in result.cause


def test_put_events_delivers_with_the_callers_arns(moto: Moto) -> None:
    queue_url, queue_arn = make_queue(moto)
    events = moto.client("events")
    source = unique("smq.test")
    rule = unique("rule")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": queue_arn}])
    sm = one_task(
        PUT_EVENTS,
        Parameters={
            "Entries": [
                {
                    "Source": source,
                    "DetailType": "OrderPlaced",
                    "Detail": {"order.$": "$.order"},
                    "Resources": ["arn:aws:x:::y"],
                }
            ]
        },
    )
    result = sm.run({"order": "o-5"}, handlers=moto.registry(), name="ev-1")
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert result.output["FailedEntryCount"] == 0
    event = json.loads(receive_one(moto, queue_url)["Body"])
    assert event["id"] == result.output["Entries"][0]["EventId"]
    assert event["detail"] == {"order": "o-5"}
    machine_arn = "arn:aws:states:us-east-1:000000000000:stateMachine:state-machine"
    assert event["resources"] == [
        "arn:aws:x:::y",
        machine_arn,
        machine_arn.replace(":stateMachine:", ":execution:") + ":ev-1",
    ]
    assert "SdkHttpMetadata" not in result.output  # PutEvents gives its response alone


def test_put_events_with_a_failed_entry_fails_as_aws(moto: Moto) -> None:
    """An entry without a Source fails: `EventBridge.FailedEntry`, the response as the cause."""
    entries = [{"Source": "ok", "DetailType": "x", "Detail": {}}, {"DetailType": "x", "Detail": {}}]
    definition = {
        "StartAt": "T",
        "States": {
            "T": {
                "Type": "Task",
                "Resource": PUT_EVENTS,
                "Parameters": {"Entries": entries},
                "Catch": [{"ErrorEquals": ["EventBridge.FailedEntry"], "Next": "Parse"}],
                "End": True,
            },
            "Parse": {"Type": "Pass", "Parameters": {"cause.$": "States.StringToJson($.Cause)"}, "End": True},
        },
    }
    result = run(definition, moto.registry())
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    cause = result.output["cause"]
    assert cause["FailedEntryCount"] == 1
    assert cause["Entries"][1]["ErrorCode"] == "InvalidArgument"
    assert "EventId" in cause["Entries"][0]

"""DynamoDB through the optimized integration (`arn:aws:states:::dynamodb:*`) and aws-sdk, on moto."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.aws.moto_server import Moto, assert_sdk_metadata, one_task, run, unique

PUT = "arn:aws:states:::dynamodb:putItem"
GET = "arn:aws:states:::dynamodb:getItem"
UPDATE = "arn:aws:states:::dynamodb:updateItem"
DELETE = "arn:aws:states:::dynamodb:deleteItem"


@pytest.fixture
def table(moto: Moto) -> str:
    name = unique("orders")
    moto.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def crud_machine(table: str) -> dict[str, Any]:
    key = {"pk": {"S.$": "$.customer"}, "sk": {"S.$": "$.order"}}
    return {
        "StartAt": "Put",
        "States": {
            "Put": {
                "Type": "Task",
                "Resource": PUT,
                "Parameters": {
                    "TableName": table,
                    "Item": {**key, "total": {"N.$": "States.Format('{}', $.total)"}, "state": {"S": "NEW"}},
                },
                "ResultPath": "$.put",
                "Next": "Update",
            },
            "Update": {
                "Type": "Task",
                "Resource": UPDATE,
                "Parameters": {
                    "TableName": table,
                    "Key": key,
                    "UpdateExpression": "SET #s = :s",
                    "ExpressionAttributeNames": {"#s": "state"},
                    "ExpressionAttributeValues": {":s": {"S": "PAID"}},
                    "ReturnValues": "UPDATED_NEW",
                },
                "ResultPath": "$.update",
                "Next": "Get",
            },
            "Get": {
                "Type": "Task",
                "Resource": GET,
                "Parameters": {"TableName": table, "Key": key},
                "ResultPath": "$.get",
                "Next": "Delete",
            },
            "Delete": {
                "Type": "Task",
                "Resource": DELETE,
                "Parameters": {"TableName": table, "Key": key, "ReturnValues": "ALL_OLD"},
                "ResultPath": "$.delete",
                "Next": "GetAgain",
            },
            "GetAgain": {
                "Type": "Task",
                "Resource": GET,
                "Parameters": {"TableName": table, "Key": key},
                "ResultPath": "$.gone",
                "End": True,
            },
        },
    }


def test_put_update_get_delete_with_aws_result_shapes(moto: Moto, table: str) -> None:
    result = run(crud_machine(table), moto.registry(), {"customer": "c-1", "order": "o-7", "total": 12.5})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    out = result.output
    assert set(out["put"]) == {"SdkHttpMetadata", "SdkResponseMetadata"}  # PutItem returns nothing else
    assert out["update"]["Attributes"] == {"state": {"S": "PAID"}}
    item = {"pk": {"S": "c-1"}, "sk": {"S": "o-7"}, "total": {"N": "12.5"}, "state": {"S": "PAID"}}
    assert out["get"]["Item"] == item
    assert out["delete"]["Attributes"] == item
    assert "Item" not in out["gone"]  # deleted: GetItem has no Item
    for step in ("put", "update", "get", "delete", "gone"):
        assert_sdk_metadata(out[step])
    # What the state machine wrote is what DynamoDB holds (read back with a bare client).
    scanned = moto.client("dynamodb").scan(TableName=table)
    assert scanned["Items"] == []


def test_conditional_check_failed_is_caught_by_aws_error_name(moto: Moto, table: str) -> None:
    """The optimized integration's name (`DynamoDB.`) and the aws-sdk one's (`DynamoDb.`) for the same
    failure, each caught by a Catch on the name AWS gives it."""
    moto.client("dynamodb").put_item(TableName=table, Item={"pk": {"S": "c"}, "sk": {"S": "o"}})
    conditional = {
        "TableName": table,
        "Item": {"pk": {"S": "c"}, "sk": {"S": "o"}},
        "ConditionExpression": "attribute_not_exists(pk)",
    }
    definition = {
        "StartAt": "Optimized",
        "States": {
            "Optimized": {
                "Type": "Task",
                "Resource": PUT,
                "Parameters": conditional,
                "Catch": [
                    {
                        "ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"],
                        "ResultPath": "$.optimized",
                        "Next": "Sdk",
                    }
                ],
                "End": True,
            },
            "Sdk": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:dynamodb:putItem",
                "Parameters": conditional,
                "Catch": [
                    {
                        "ErrorEquals": ["DynamoDb.ConditionalCheckFailedException"],
                        "ResultPath": "$.sdk",
                        "Next": "Caught",
                    }
                ],
                "End": True,
            },
            "Caught": {"Type": "Succeed"},
        },
    }
    result = run(definition, moto.registry())
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    optimized, sdk = result.output["optimized"], result.output["sdk"]
    assert optimized["Error"] == "DynamoDB.ConditionalCheckFailedException"
    assert optimized["Cause"].startswith(
        "The conditional request failed (Service: AmazonDynamoDBv2; Status Code: 400; "
    )
    assert "Error Code: ConditionalCheckFailedException; Request ID: " in optimized["Cause"]
    assert optimized["Cause"].endswith("; Proxy: null)")
    assert sdk["Error"] == "DynamoDb.ConditionalCheckFailedException"
    assert sdk["Cause"].startswith(
        "The conditional request failed (Service: DynamoDb, Status Code: 400, Request ID: "
    )


def test_undeclared_and_declared_errors_name_as_aws(moto: Moto) -> None:
    """A missing table is a declared error (ResourceNotFoundException); parameters DynamoDB refuses
    are the service's base exception, as AWS reports them."""
    missing = unique("missing")
    cases = [
        (PUT, {"TableName": missing, "Item": {"pk": {"S": "x"}}}, "DynamoDB.ResourceNotFoundException"),
        (
            "arn:aws:states:::aws-sdk:dynamodb:putItem",
            {"TableName": missing, "Item": {"pk": {"S": "x"}}},
            "DynamoDb.ResourceNotFoundException",
        ),
        (PUT, {"TableName": missing}, "DynamoDB.AmazonDynamoDBException"),  # no Item
        ("arn:aws:states:::aws-sdk:dynamodb:getItem", {"TableName": missing}, "DynamoDb.DynamoDbException"),
    ]
    registry = moto.registry()
    for resource, parameters, error in cases:
        result = run(one_task(resource, Parameters=parameters), registry)
        assert (result.status, result.error) == ("FAILED", error), (resource, result.cause)
        assert result.cause


def test_aws_sdk_query_gives_the_response_in_pascal_case(moto: Moto, table: str) -> None:
    client = moto.client("dynamodb")
    for sk in ("a", "b", "c"):
        client.put_item(TableName=table, Item={"pk": {"S": "c-9"}, "sk": {"S": sk}, "n": {"N": "1"}})
    sm = one_task(
        "arn:aws:states:::aws-sdk:dynamodb:query",
        Parameters={
            "TableName": table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S.$": "$.customer"}},
            "ScanIndexForward": False,
            "Limit": 2,
        },
    )
    result = run(sm, moto.registry(), {"customer": "c-9"})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    out = result.output
    assert [item["sk"]["S"] for item in out["Items"]] == ["c", "b"]
    assert out["Count"] == 2
    assert out["LastEvaluatedKey"] == {"pk": {"S": "c-9"}, "sk": {"S": "b"}}
    assert "SdkHttpMetadata" not in out and "ResponseMetadata" not in out  # aws-sdk: the response alone
    json.dumps(out)  # JSON all the way down

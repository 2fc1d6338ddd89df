"""Scale the vault instances in by one step when the composite "idle" alarm fires.

A composite alarm cannot run an Auto Scaling policy itself, so it invokes this function,
which runs the simple scaling policy named in ``POLICY_NAME``, honouring its cooldown.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.exceptions import ClientError

_client = boto3.client("autoscaling")


def handler(event: dict[str, Any], _context: object) -> dict[str, Any]:
    state = event.get("alarmData", {}).get("state", {}).get("value")
    if state != "ALARM":
        return {"executed": False, "reason": f"alarm state {state}"}
    try:
        _client.execute_policy(
            AutoScalingGroupName=os.environ["ASG_NAME"],
            PolicyName=os.environ["POLICY_NAME"],
            HonorCooldown=True,
        )
    except ClientError as exc:
        # Inside the cooldown Auto Scaling refuses; the alarm fires again if still idle.
        if exc.response.get("Error", {}).get("Code") == "ScalingActivityInProgress":
            return {"executed": False, "reason": "cooldown"}
        raise
    return {"executed": True}

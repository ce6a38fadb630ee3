"""The AWS Auto Scaling Query API (version 2011-01-01), at ``/autoscaling`` and ``/``, by GET and POST.

``Action=…`` requests, form-encoded (boto3) or in the query string (boto 2 sends its reads so), signed with
SigV4 by keys cloudherd issued; answers in AWS's XML.
boto3's stock ``autoscaling`` client works given ``endpoint_url``, a region and the keys.  The model is
:mod:`cloudherd.api.autoscaling`; this module only reads requests and writes answers.

Every answer is XML, whatever happens: a parameter holding what XML 1.0 cannot carry is refused at input
(naming it), what is written is cleaned of such characters all the same (for rows stored before), and an
error that is not AWS's own is rendered in AWS's format (a spec's refusal as ValidationError, a bug as
InternalFailure 500).  Only a database fault is left to the app's handler, which answers it in XML too.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from cloudherd.api.auth import Principal, aws_secret
from cloudherd.api.autoscaling import (
    NOT_XML,
    AutoScaling,
    AwsError,
    xml_refusal,
)
from cloudherd.api.autoscaling_mixed import NEEDS_LAUNCH, mixed_choices
from cloudherd.api.autoscaling_policies import read_policy
from cloudherd.engine.locks import BusyError
from cloudherd.errors import CloudherdError, StateError
from cloudherd.observe import cause
from cloudherd.server.autoscaling_hooks import HOOK_ACTIONS, POOL_ACTIONS
from cloudherd.server.autoscaling_instances import INSTANCE_ACTIONS, group_choices
from cloudherd.server.autoscaling_notify import NOTIFY_ACTIONS
from cloudherd.server.autoscaling_params import (
    Params,
    _bool,
    _filters,
    _members,
    _required,
    _shown,
    _size,
    _structs,
    _tags,
)
from cloudherd.server.autoscaling_refresh import REFRESH_ACTIONS
from cloudherd.server.autoscaling_xml import failures_xml as _failures_xml
from cloudherd.server.autoscaling_xml import group_xml as _group_xml
from cloudherd.server.autoscaling_xml import instance_xml as _instance_xml
from cloudherd.server.autoscaling_xml import launch_xml as _launch_xml
from cloudherd.server.autoscaling_xml import policy_arn
from cloudherd.server.autoscaling_xml import policy_xml as _policy_xml
from cloudherd.server.autoscaling_xml import schedule_xml as _schedule_xml
from cloudherd.server.autoscaling_xml import tag_xml as _tag_xml
from cloudherd.server.autoscaling_xml import x as _x
from cloudherd.server.autoscaling_xml import xml_list as _list
from cloudherd.server.deps import runtime_of
from cloudherd.server.errors import NAMESPACE, aws_error, clean, database_fault, status_of
from cloudherd.server.sigv4 import SignatureError, verify
from cloudherd.times import utcnow

log = logging.getLogger("cloudherd.server")

VERSION = "2011-01-01"
router = APIRouter(include_in_schema=False)  # not JSON: described in the README, not in /openapi.json



QUERY_METHODS = ["GET", "POST"]
OTHER_METHODS = ["PUT", "DELETE", "PATCH", "OPTIONS"]


@router.api_route("/", methods=QUERY_METHODS)
@router.api_route("/autoscaling", methods=QUERY_METHODS)
async def query(request: Request) -> Response:
    if request.method == "GET" and not request.url.query and "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/ui/", status_code=303)  # a person opening the server's address: the dashboard
    request_id = str(uuid.uuid4())
    body = await request.body()
    runtime = runtime_of(request)
    action = ""
    try:
        who = await asyncio.to_thread(_authenticate, runtime.store, request, body)
        params = _form(body)
        params.update({k: v for k, v in _form(request.url.query).items() if not k.startswith("X-Amz-")})
        _check_characters(params)
        action = params.get("Action", "")
        if params.get("Version", VERSION) != VERSION:
            raise AwsError("InvalidAction", f"version {params.get('Version')} is not served (only {VERSION})")
        handler = ACTIONS.get(action)
        if handler is None:
            raise AwsError("InvalidAction", f"The action {action or '(none)'} is not valid for this web service.")
        cause.begin(f"Auto Scaling {action} (by {who.user_name})")  # what the request's events happened in
        model = AutoScaling(runtime.store, who.user_id, runtime.config.providers, poke=runtime.poke,
                            start_down=runtime.start_down, ceiling=runtime.config.max_group_size)
        result = await handler(model, params)
    except SignatureError as exc:
        return aws_error(exc.code, str(exc), exc.status, request_id)
    except AwsError as exc:
        return aws_error(exc.code, exc.message, exc.status, request_id)
    except CloudherdError as exc:
        if isinstance(exc, StateError):
            raise  # the app's handler: 503 with Retry-After, in XML here
        code, status = _aws_code(exc)
        return aws_error(code, clean(Exception.__str__(exc)), status, request_id)
    except Exception as exc:
        if database_fault(exc):
            raise  # as above
        log.error("internal error in %s: %s", action or "the Query API", exc.__class__.__name__, exc_info=exc)
        return aws_error("InternalFailure", f"internal error ({exc.__class__.__name__})", 500, request_id)
    inner = f"<{action}Result>{result}</{action}Result>" if result is not None else ""
    xml = (f'<{action}Response xmlns="{NAMESPACE}">{inner}'
           f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>")
    return Response(xml, media_type="text/xml")


@router.api_route("/", methods=OTHER_METHODS)
@router.api_route("/autoscaling", methods=OTHER_METHODS)
async def other_method(request: Request) -> Response:
    """Every answer under the endpoint is AWS's XML, a method the Query API does not take too."""
    return aws_error("MethodNotAllowed", f"The Query API takes GET and POST, not {request.method}.", 405,
                     str(uuid.uuid4()))


@router.api_route("/autoscaling/{rest:path}", methods=[*QUERY_METHODS, *OTHER_METHODS])
async def below_endpoint(request: Request, rest: str) -> Response:
    return aws_error("InvalidAction", "The Query API is served at /autoscaling (and /), not below it.", 404,
                     str(uuid.uuid4()))


def _form(raw: bytes | str) -> Params:
    """A form's fields, the last of each name; text that is not UTF-8 (raw, or after its percent-escapes: a
    lone surrogate among them) is refused, not read with replacement characters."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        pairs = parse_qs(text, keep_blank_values=True, errors="strict")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise AwsError("ValidationError", "the request is not UTF-8 text (in URL-encoded form)") from None
    return {k: v[-1] for k, v in pairs.items()}


def _authenticate(store: Any, request: Request, body: bytes) -> Principal:
    found: dict[str, Principal] = {}

    def secret_for(key_id: str) -> str | None:
        pair = aws_secret(store, key_id)
        if pair is None:
            return None
        found[key_id] = pair[0]
        return pair[1]

    raw_path = request.scope.get("raw_path") or request.url.path.encode()  # as signed: still percent-encoded
    key_id, _region = verify(request.method, raw_path.decode("latin-1"), request.url.query, dict(request.headers),
                             body, secret_for)
    return found[key_id]


def _aws_code(exc: CloudherdError) -> tuple[str, int]:
    """cloudherd's own errors in AWS's terms: the caller's mistakes are a ValidationError (400), a command
    already changing the group ScalingActivityInProgress, a cloud's failure InternalFailure (502)."""
    if isinstance(exc, BusyError):
        return "ScalingActivityInProgress", 400
    status = status_of(exc)
    if status == 409:
        return "ResourceInUse", 400
    if status >= 500:
        return "InternalFailure", status
    return "ValidationError", 400


_BAD_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _check_characters(params: Params) -> None:
    """Every parameter, name and value, holds only what XML 1.0 can carry (any of them may be echoed back)."""
    for key, value in params.items():
        bad = NOT_XML.search(key)
        if bad is not None:
            raise AwsError("ValidationError", f"1 validation error detected: the parameter name "
                                              f"'{_BAD_NAME.sub('?', key)[:100]}' holds U+{ord(bad.group()):04X}, "
                                              "which XML 1.0 cannot carry")
        refusal = xml_refusal(key, value)
        if refusal is not None:
            raise AwsError("ValidationError", refusal)


# -- actions ----------------------------------------------------------------------------------------------

Handler = Callable[[AutoScaling, Params], Any]


async def create_launch_configuration(model: AutoScaling, p: Params) -> None:
    await asyncio.to_thread(
        model.create_launch_configuration, _required(p, "LaunchConfigurationName"), p.get("ImageId", ""),
        p.get("InstanceType"), p.get("UserData"), p.get("KeyName"), _members(p, "SecurityGroups"))


async def describe_launch_configurations(model: AutoScaling, p: Params) -> str:
    rows = await asyncio.to_thread(model.launch_configurations, _members(p, "LaunchConfigurationNames"))
    return _list("LaunchConfigurations", [_launch_xml(r) for r in rows])


async def delete_launch_configuration(model: AutoScaling, p: Params) -> None:
    await asyncio.to_thread(model.delete_launch_configuration, _required(p, "LaunchConfigurationName"))


def _no_launch_template(p: Params) -> None:
    """A launch template beside a launch configuration is refused, not dropped: cloudherd serves launch
    configurations only."""
    if any(key == "LaunchTemplate" or key.startswith("LaunchTemplate.") for key in p):
        raise AwsError("ValidationError", "LaunchTemplate is not served: give LaunchConfigurationName "
                                          "(CreateLaunchConfiguration makes one)")


async def create_auto_scaling_group(model: AutoScaling, p: Params) -> None:
    name = _required(p, "AutoScalingGroupName")
    _no_launch_template(p)
    launch = p.get("LaunchConfigurationName")
    mixed = mixed_choices(p)  # a launch template in it refused first: its refusal names what to give instead
    if not launch:
        raise AwsError("ValidationError", NEEDS_LAUNCH if mixed else
                       "LaunchConfigurationName is required (launch templates are not served)")
    await model.create_group(name, launch, _size(model, p, "MinSize", required=True) or 0,
                             _size(model, p, "MaxSize", required=True) or 0, _size(model, p, "DesiredCapacity"),
                             _members(p, "AvailabilityZones"), _tags(p, name), {**group_choices(p), **mixed})


async def describe_auto_scaling_groups(model: AutoScaling, p: Params) -> str:
    groups = await asyncio.to_thread(model.groups, _members(p, "AutoScalingGroupNames"))
    return _list("AutoScalingGroups", [_group_xml(g) for g in groups])


async def update_auto_scaling_group(model: AutoScaling, p: Params) -> None:
    name, zones = _required(p, "AutoScalingGroupName"), _members(p, "AvailabilityZones")
    _no_launch_template(p)
    min_size, max_size = _size(model, p, "MinSize"), _size(model, p, "MaxSize")
    desired = _size(model, p, "DesiredCapacity")
    choices = {**group_choices(p), **mixed_choices(p)}
    await asyncio.to_thread(
        lambda: model.update_group(name, launch_configuration=p.get("LaunchConfigurationName"), min_size=min_size,
                                   max_size=max_size, desired=desired, zones=zones or None, choices=choices))


async def set_desired_capacity(model: AutoScaling, p: Params) -> None:
    await asyncio.to_thread(model.set_desired, _required(p, "AutoScalingGroupName"),
                            _size(model, p, "DesiredCapacity", required=True) or 0)


async def delete_auto_scaling_group(model: AutoScaling, p: Params) -> None:
    await asyncio.to_thread(lambda: model.delete_group(_required(p, "AutoScalingGroupName"),
                                                       force=_bool(p, "ForceDelete")))


async def describe_auto_scaling_instances(model: AutoScaling, p: Params) -> str:
    found = await asyncio.to_thread(model.instances, _members(p, "InstanceIds"))
    return _list("AutoScalingInstances", [_instance_xml(i, with_group=True) for i in found])


async def terminate_instance_in_auto_scaling_group(model: AutoScaling, p: Params) -> str:
    decrement = _required(p, "ShouldDecrementDesiredCapacity").lower() == "true"
    instance = await asyncio.to_thread(lambda: model.terminate_instance(_required(p, "InstanceId"),
                                                                        decrement=decrement))
    return "<Activity>" + "".join([
        _x("ActivityId", str(uuid.uuid4())), _x("AutoScalingGroupName", instance.group),
        _x("Description", f"Terminating EC2 instance: {instance.id}"),
        _x("Cause", f"instance {instance.id} was taken out of service in response to a user request"
                    + (", shrinking the capacity." if decrement else ".")),
        _x("StartTime", utcnow()), _x("StatusCode", "InProgress"), _x("Progress", 0),
    ]) + "</Activity>"


async def create_or_update_tags(model: AutoScaling, p: Params) -> None:
    await asyncio.to_thread(model.put_tags, _tags(p))


async def delete_tags(model: AutoScaling, p: Params) -> None:
    await asyncio.to_thread(model.delete_tags, _tags(p))


async def describe_tags(model: AutoScaling, p: Params) -> str:
    filters = _filters(p)
    tags = await asyncio.to_thread(model.tags, filters.get("auto-scaling-group", []), filters.get("key", []),
                                   filters.get("value", []))
    return _list("Tags", [_tag_xml(t) for t in tags])


async def put_scaling_policy(model: AutoScaling, p: Params) -> str:
    group, name = _required(p, "AutoScalingGroupName"), _required(p, "PolicyName")
    policy = read_policy(p.get("PolicyType") or "SimpleScaling", p, _structs(p, "StepAdjustments"))
    await asyncio.to_thread(model.put_policy, group, name, policy)
    return _x("PolicyARN", policy_arn(group, name)) + "<Alarms/>"


async def describe_policies(model: AutoScaling, p: Params) -> str:
    found = await asyncio.to_thread(model.policies, p.get("AutoScalingGroupName"), _members(p, "PolicyNames"),
                                    _members(p, "PolicyTypes"))
    return _list("ScalingPolicies", [_policy_xml(group, name, policy) for group, name, policy in found])


async def delete_policy(model: AutoScaling, p: Params) -> None:
    await asyncio.to_thread(model.delete_policy, _required(p, "AutoScalingGroupName"), _required(p, "PolicyName"))


async def execute_policy(model: AutoScaling, p: Params) -> None:
    def number(key: str) -> float | None:
        try:
            return float(p[key]) if p.get(key) else None
        except ValueError:
            raise AwsError("ValidationError", f"{key}: {_shown(p[key])} is not a number") from None

    await asyncio.to_thread(lambda: model.execute_policy(
        _required(p, "AutoScalingGroupName"), _required(p, "PolicyName"),
        honor_cooldown=p.get("HonorCooldown", "").lower() == "true", metric_value=number("MetricValue"),
        breach_threshold=number("BreachThreshold")))


_SCHEDULE_FIELDS = ("ScheduledActionName", "Recurrence", "StartTime", "EndTime", "Time", "MinSize", "MaxSize",
                    "DesiredCapacity", "TimeZone")


async def put_scheduled_update_group_action(model: AutoScaling, p: Params) -> None:
    group, name = _required(p, "AutoScalingGroupName"), _required(p, "ScheduledActionName")
    failed = await asyncio.to_thread(model.put_schedules, group, [{k: p.get(k) for k in _SCHEDULE_FIELDS}])
    if failed:
        raise AwsError("ValidationError", f"{name}: {failed[0][1]}")


async def batch_put_scheduled_update_group_action(model: AutoScaling, p: Params) -> str:
    actions = _structs(p, "ScheduledUpdateGroupActions")
    if not actions:
        raise AwsError("ValidationError", "ScheduledUpdateGroupActions names at least one action")
    failed = await asyncio.to_thread(model.put_schedules, _required(p, "AutoScalingGroupName"), actions)
    return _failures_xml("FailedScheduledUpdateGroupActions", failed)


async def describe_scheduled_actions(model: AutoScaling, p: Params) -> str:
    found = await asyncio.to_thread(model.schedules, p.get("AutoScalingGroupName"),
                                    _members(p, "ScheduledActionNames"))
    return _list("ScheduledUpdateGroupActions", [_schedule_xml(group, action) for group, action in found])


async def delete_scheduled_action(model: AutoScaling, p: Params) -> None:
    name = _required(p, "ScheduledActionName")
    if await asyncio.to_thread(model.delete_schedules, _required(p, "AutoScalingGroupName"), [name]):
        raise AwsError("ValidationError", f"Scheduled Update Group Action not found - {name}")


async def batch_delete_scheduled_action(model: AutoScaling, p: Params) -> str:
    names = _members(p, "ScheduledActionNames")
    failed = await asyncio.to_thread(model.delete_schedules, _required(p, "AutoScalingGroupName"), names)
    return _failures_xml("FailedScheduledActions", failed)


ACTIONS: Mapping[str, Handler] = {
    "PutScheduledUpdateGroupAction": put_scheduled_update_group_action,
    "BatchPutScheduledUpdateGroupAction": batch_put_scheduled_update_group_action,
    "DescribeScheduledActions": describe_scheduled_actions,
    "DeleteScheduledAction": delete_scheduled_action,
    "BatchDeleteScheduledAction": batch_delete_scheduled_action,
    "PutScalingPolicy": put_scaling_policy,
    "DescribePolicies": describe_policies,
    "DeletePolicy": delete_policy,
    "ExecutePolicy": execute_policy,
    "CreateLaunchConfiguration": create_launch_configuration,
    "DescribeLaunchConfigurations": describe_launch_configurations,
    "DeleteLaunchConfiguration": delete_launch_configuration,
    "CreateAutoScalingGroup": create_auto_scaling_group,
    "DescribeAutoScalingGroups": describe_auto_scaling_groups,
    "UpdateAutoScalingGroup": update_auto_scaling_group,
    "SetDesiredCapacity": set_desired_capacity,
    "DeleteAutoScalingGroup": delete_auto_scaling_group,
    "DescribeAutoScalingInstances": describe_auto_scaling_instances,
    "TerminateInstanceInAutoScalingGroup": terminate_instance_in_auto_scaling_group,
    "CreateOrUpdateTags": create_or_update_tags,
    "DescribeTags": describe_tags,
    "DeleteTags": delete_tags,
    **INSTANCE_ACTIONS,
    **HOOK_ACTIONS,
    **POOL_ACTIONS,
    **REFRESH_ACTIONS,
    **NOTIFY_ACTIONS,
}
